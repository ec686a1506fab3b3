"""Several agents at once (DESIGN.md section 10): `publish A B ... -m WHY` publishes all or
none: every agent checked first, all tags written in one ref transaction and all production
refs in the next, one atomic push; each record names the release. Real repositories, real
crashes (AGENTSTAGE_CRASH_AT), a real race (AGENTSTAGE_PAUSE_AT), a real hooked server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import commit_all, git, hooked_server, tree_state

A, B, C = "billing-support", "hr-helpdesk", "sales-assistant"


def cli(repo: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          check=False)


def ref(repo: Path, name: str) -> str | None:
    return git(repo, "rev-parse", "-q", "--verify", name, check=False) or None


def tags(repo: Path) -> list[str]:
    return git(repo, "tag", "--list").split()


def set_field(run: Any, repo: Path, agent: str, value: str) -> None:
    done = run("set", agent, f"model.temperature={value}", "-m", "tune", repo=repo)
    assert done.code == 0, done.err


def assert_at_tags(repo: Path, *tags_: str) -> None:
    for tag in tags_:
        agent = tag.partition("/v")[0]
        assert ref(repo, f"refs/heads/production/{agent}") == ref(repo, f"{tag}^{{commit}}")


# -- locally ---------------------------------------------------------------------------------


def test_a_release_publishes_each_agent_and_each_record_names_the_others(
        run: Any, repo: Path) -> None:
    done = run("publish", A, B, "-m", "launch both", "--format", "json", repo=repo)
    assert done.code == 0, done.err
    out = done.json()
    assert out["release"] == [f"{A}/v1", f"{B}/v1"] and out["skipped"] == []
    assert [p["tag"] for p in out["publishes"]] == out["release"]
    assert all(p["published"] and p["changes"] for p in out["publishes"])
    assert_at_tags(repo, f"{A}/v1", f"{B}/v1")
    for agent in (A, B):
        entry = run("history", agent, "--format", "json", repo=repo).json()[0]
        assert entry["release"] == [f"{A}/v1", f"{B}/v1"]
        assert entry["verified"] and entry["reason"] == "launch both"
    listed = run("history", "--format", "json", repo=repo).json()
    assert sorted(e["tag"] for e in listed) == [f"{A}/v1", f"{B}/v1"]
    # a later release gives each agent its next tag
    set_field(run, repo, A, "0.6")
    set_field(run, repo, C, "0.6")
    again = run("publish", C, A, "-m", "second", "--format", "json", repo=repo)
    assert again.code == 0, again.err
    assert again.json()["release"] == [f"{C}/v1", f"{A}/v2"]
    assert_at_tags(repo, f"{C}/v1", f"{A}/v2", f"{B}/v1")
    text = run("publish", A, B, "--dry-run", repo=repo)
    assert text.code == 3 and f"error: {A}: staging is identical" in text.err
    assert run("doctor", repo=repo).code == 0


def test_text_output_and_single_agent_output_unchanged(run: Any, repo: Path) -> None:
    done = run("publish", A, B, "-m", "both", repo=repo)
    assert done.code == 0, done.err
    assert done.out.startswith(f"Published together: {A}/v1, {B}/v1\n\nPublished {A} v1")
    set_field(run, repo, A, "0.7")
    single = run("publish", A, "-m", "one", "--format", "json", repo=repo)
    assert single.code == 0 and single.json()["tag"] == f"{A}/v2"  # the publish shape
    assert "release" not in git(repo, "cat-file", "tag", f"{A}/v2")


def test_one_invalid_agent_refuses_all(run: Any, repo: Path) -> None:
    (repo / "agents" / B / "agent.yaml").write_text("name: [unclosed\n")
    commit_all(repo, "break hr")
    before = tree_state(repo)
    done = run("publish", A, B, "-m", "both", repo=repo)
    assert done.code == 4, done.err
    assert f"agents/{B}/agent.yaml" in done.err
    assert tree_state(repo) == before and tags(repo) == []


def test_nothing_to_publish_in_one_refuses_all_naming_it_unless_skipped(
        run: Any, repo: Path) -> None:
    assert run("publish", A, "-m", "first", repo=repo).code == 0
    before = tree_state(repo)
    done = run("publish", B, A, "-m", "both", "--format", "json", repo=repo)
    assert done.code == 3
    assert f"error: {A}: staging is identical to production (v1), nothing to publish: " \
           "nothing of the release was published" in done.err
    assert "--skip-unchanged" in done.err
    assert done.json()["agents"] == [B, A]
    assert tree_state(repo) == before
    skipped = run("publish", B, A, "-m", "both", "--skip-unchanged", "--format", "json",
                  repo=repo)
    assert skipped.code == 0, skipped.err
    assert skipped.json()["release"] == [f"{B}/v1"] and skipped.json()["skipped"] == [A]
    none = run("publish", B, A, "-m", "again", "--skip-unchanged", repo=repo)
    assert none.code == 3 and "for every one, nothing to publish" in none.err


def test_usage_errors(run: Any, repo: Path) -> None:
    assert run("publish", A, A, "-m", "x", repo=repo).code == 2
    assert run("publish", A, "Bad/Id", "-m", "x", repo=repo).code == 2
    assert run("publish", A, B, repo=repo).code == 2  # no reason
    assert tags(repo) == []


def test_a_production_moved_meanwhile_refuses_all(run: Any, repo: Path,
                                                   tmp_path: Path) -> None:
    """The release is checked, then paused before it writes; meanwhile another publisher
    publishes B: the release's transaction finds production/B moved, nothing is written."""
    release = tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentstage", "-C", str(repo), "publish", A, B, "-m", "both"],
        env={**os.environ, "AGENTSTAGE_PAUSE_AT": "publish:planned",
             "AGENTSTAGE_PAUSE_FILE": str(release)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not Path(f"{release}.reached").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    other = run("publish", B, "-m", "meanwhile", repo=repo)
    assert other.code == 0, other.err
    release.touch()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    assert "moved while this command ran" in err and "Traceback" not in err
    assert tags(repo) == [f"{B}/v1"]
    assert ref(repo, f"refs/heads/production/{A}") is None
    assert run("doctor", repo=repo).code == 0


# -- crashes between the refs -----------------------------------------------------------------


@pytest.mark.parametrize("point", ["publish:after-tag-object", "publish:after-tag"])
def test_a_crash_is_repaired_by_doctor(run: Any, repo: Path, point: str) -> None:
    done = cli(repo, "publish", A, B, "-m", "both", env={"AGENTSTAGE_CRASH_AT": point})
    assert done.returncode == 137, done.stderr
    if point == "publish:after-tag-object":  # nothing but unreferenced objects
        assert tags(repo) == []
        assert run("doctor", repo=repo).code == 0
        assert run("publish", A, B, "-m", "again", repo=repo).code == 0
        assert_at_tags(repo, f"{A}/v1", f"{B}/v1")
        return
    assert sorted(tags(repo)) == [f"{A}/v1", f"{B}/v1"]  # the tags ahead, production not moved
    assert ref(repo, f"refs/heads/production/{A}") is None
    found = run("doctor", "--format", "json", repo=repo)
    assert found.code == 1
    assert sorted(f["where"] for f in found.json()["findings"]) == [
        f"refs/heads/production/{A}", f"refs/heads/production/{B}"]
    repaired = run("doctor", "--repair", "--format", "json", repo=repo)
    assert repaired.code == 0, repaired.out
    assert repaired.json()["healthy"]
    assert all(f["repaired"] for f in repaired.json()["findings"])
    assert_at_tags(repo, f"{A}/v1", f"{B}/v1")


def test_a_crash_is_repaired_by_the_next_publish_of_any_of_them(run: Any, repo: Path) -> None:
    done = cli(repo, "publish", A, B, "-m", "both",
               env={"AGENTSTAGE_CRASH_AT": "publish:after-tag"})
    assert done.returncode == 137
    set_field(run, repo, B, "0.9")
    nxt = run("publish", B, "-m", "next", "--format", "json", repo=repo)
    assert nxt.code == 0, nxt.err
    # B's publish completed the whole interrupted release (A too), then published B/v2
    assert f"completed an interrupted publish: refs/heads/production/{A} moved to {A}/v1" \
        in nxt.err
    assert nxt.json()["tag"] == f"{B}/v2"
    assert_at_tags(repo, f"{A}/v1", f"{B}/v2")
    assert run("doctor", repo=repo).code == 0


# -- a remote with the server hook --------------------------------------------------------------

POLICY = f"""\
admins: [alice]
editors: ["*"]
publishers:
  "*": [alice]
  {A}: [bob]
"""


@pytest.fixture
def hooked(run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(a clone on staging, its bare server with `hooks install --server` and a policy
    that lets bob publish only A; alice may publish every agent)."""
    _source, server = hooked_server(tmp_path, run)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert run("policy", "set", str(tmp_path / "policy.yaml"), repo=clone).code == 0
    monkeypatch.setenv("REMOTE_USER", "alice")
    git(clone, "push", "-q", "origin", "refs/meta/agentstage")
    return clone, server


def test_a_release_is_pushed_in_one_atomic_push(run: Any, hooked: tuple[Path, Path]) -> None:
    clone, server = hooked
    done = run("publish", A, B, "-m", "both", "--format", "json", repo=clone)
    assert done.code == 0, done.err
    assert done.json()["pushed"] == "origin"
    assert_at_tags(server, f"{A}/v1", f"{B}/v1")
    entries = run("history", "--format", "json", repo=server).json()
    assert sorted(e["tag"] for e in entries) == [f"{A}/v1", f"{B}/v1"]
    assert all(e["verified"] and e["release"] == [f"{A}/v1", f"{B}/v1"] for e in entries)
    assert all(e["pushed_by"] == "alice" for e in entries)


def test_the_server_refusing_one_pair_refuses_the_release(
        run: Any, hooked: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    clone, server = hooked
    local, remote = tree_state(clone), tree_state(server)
    monkeypatch.setenv("REMOTE_USER", "bob")  # bob may publish A, not B
    done = run("publish", A, B, "-m", "both", repo=clone)
    assert done.code == 7, done.err
    assert f"origin refused the publish of {A}/v1, {B}/v1" in done.err
    assert f"bob may not publish {B}" in done.err
    assert f"taken back and production/{A} removed, production/{B} removed" in done.err
    assert tree_state(clone) == local and tree_state(server) == remote
    monkeypatch.setenv("REMOTE_USER", "alice")
    assert run("publish", A, B, "-m", "both", repo=clone).code == 0
    assert_at_tags(server, f"{A}/v1", f"{B}/v1")


@pytest.mark.parametrize("atomic", [True, False])
def test_the_hook_takes_every_pair_or_none_with_and_without_atomic(
        run: Any, hooked: tuple[Path, Path], atomic: bool) -> None:
    """A real `git push` of two production/tag pairs: pre-receive refusing one refuses the
    whole push, --atomic or not; every pair valid, it is all taken."""
    clone, server = hooked
    assert run("publish", A, B, "-m", "both", "--no-push", repo=clone).code == 0
    refs = [f"production/{A}", f"refs/tags/{A}/v1", f"production/{B}", f"refs/tags/{B}/v1"]
    before = tree_state(server)

    def push(user: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "REMOTE_USER": user}
        return subprocess.run(["git", "-C", str(clone), "push", "--porcelain",
                               *(["--atomic"] if atomic else []), "origin", *refs],
                              env=env, capture_output=True, text=True, check=False)

    refused = push("bob")
    assert refused.returncode != 0
    assert "pre-receive hook declined" in refused.stdout + refused.stderr
    assert f"bob may not publish {B}" in refused.stderr
    assert tree_state(server) == before  # not even bob's own A went in
    taken = push("alice")
    assert taken.returncode == 0, taken.stderr
    assert_at_tags(server, f"{A}/v1", f"{B}/v1")


# -- POST /api/v2/publish against a real `agentstage serve` -------------------------------------

API_POLICY = f"""\
admins: [alice]
editors: ["*"]
publishers:
  "*": [alice]
  {A}: [bob]
"""


def test_the_api_publishes_all_or_none(tmp_path: Path) -> None:
    from test_serve import Server, sample_repo, server_env

    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    (tmp_path / "policy.yaml").write_text(API_POLICY)
    assert cli(repo, "policy", "set", str(tmp_path / "policy.yaml"), env=env).returncode == 0
    server = Server(repo, env, "--auth", "header:X-Forwarded-User")
    try:
        with server.client() as http:
            def post(body: Any, user: str = "alice") -> Any:
                return http.post("/api/v2/publish", json=body,
                                 headers={"x-forwarded-user": user})

            before = tree_state(repo)
            r = post({"agents": [A, B], "reason": "both"}, user="bob")
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "policy"
            assert f"bob may not publish {B}" in r.json()["error"]["message"]
            r = post({"agents": [A, "Bad/Id"], "reason": "both"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "usage"
            r = post({"agents": [], "reason": "both"})
            assert r.status_code in (400, 422)
            diff = http.get(f"/api/v2/agents/{A}/staging-diff",
                            headers={"x-forwarded-user": "alice"})
            r = post({"agents": [{"id": A, "if_match": '"stale"'}, B], "reason": "both"})
            assert r.status_code == 412, r.text
            assert tree_state(repo) == before
            # an invalid agent: 422 located in its file, nothing published
            (repo / "agents" / C / "agent.yaml").write_text("name: [unclosed\n")
            commit_all(repo, "break sales")
            broken = tree_state(repo)
            r = post({"agents": [A, C], "reason": "both"})
            assert r.status_code == 422, r.text
            assert any(p["file"] == f"staging:agents/{C}/agent.yaml"
                       for p in r.json()["error"]["problems"])
            assert tree_state(repo) == broken
            r = post({"agents": [{"id": A, "if_match": diff.headers["etag"]}, B],
                      "reason": "both"})
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["release"] == [f"{A}/v1", f"{B}/v1"] and out["skipped"] == []
            assert [p["tag"] for p in out["publishes"]] == out["release"]
            entry = http.get(f"/api/v2/agents/{B}/publishes/1",
                             headers={"x-forwarded-user": "alice"}).json()
            assert entry["release"] == [f"{A}/v1", f"{B}/v1"]
            # nothing to publish in one: 409, naming it; skip_unchanged leaves it out
            git(repo, "checkout", "-q", "--", f"agents/{C}")
            r = post({"agents": [A, B], "reason": "again"})
            assert r.status_code == 409, r.text
            assert r.json()["error"]["code"] == "nothing_to_publish"
            assert r.json()["error"]["message"].startswith(f"{A}: staging is identical")
            assert sorted(tags(repo)) == [f"{A}/v1", f"{B}/v1"]
    finally:
        assert server.stop() == 0, server.stderr
    assert "Traceback" not in server.stderr
