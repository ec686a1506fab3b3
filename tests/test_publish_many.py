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

from conftest import commit_all, git, tree_state

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
    assert done.json()["release"] == [B, A]
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
