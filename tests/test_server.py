"""The server hook on a real bare repository: every rule of DESIGN.md section 7 through real
`git push`, both ways; the policy; and publish pushed atomically to a remote."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentstage.errors import PolicyDenied
from agentstage.remote import fetch, push_publish, push_published
from agentstage.store import Store
from conftest import commit_all, copy_repo, git, hooked_server, tree_state

AGENT = "billing-support"
AGENT_YAML = Path("agents") / AGENT / "agent.yaml"
PROD = f"refs/heads/production/{AGENT}"
POLICY = """\
admins: [alice]
editors: ["*"]
publishers:
  "*": [alice]
  billing-support: [bob]
"""


_TEMPLATE: dict[str, Path] = {}


def _template(run: Any, factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built once per session: a bare server with the server hook and staging pushed to
    it (through the hook), and a clone of it. Each test copies both."""
    if not _TEMPLATE:
        base = factory.mktemp("server-template")
        _source, server = hooked_server(base, run)
        git(base, "clone", "-q", str(server), str(base / "clone"))
        _TEMPLATE.update(server=server, clone=base / "clone")
    return _TEMPLATE


@pytest.fixture
def server(run: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare server repository with the server hook installed, staging on it."""
    return copy_repo(_template(run, tmp_path_factory)["server"], tmp_path / "server.git")


@pytest.fixture
def clone(server: Path, tmp_path: Path) -> Path:
    """A clone of `server`, on staging, origin pointing at it."""
    return copy_repo(_TEMPLATE["clone"], tmp_path / "clone", origin=server)


def push(repo: Path, *refspecs: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REMOTE_USER"}
    if user is not None:
        env["REMOTE_USER"] = user
    return subprocess.run(["git", "-C", str(repo), "push", "--atomic", "--porcelain", "origin",
                           *refspecs], capture_output=True, text=True, check=False, env=env)


def refused(done: subprocess.CompletedProcess[str], *texts: str) -> None:
    assert done.returncode != 0, done.stderr
    assert "pre-receive hook declined" in done.stdout + done.stderr
    for text in texts:
        assert text in done.stderr, done.stderr


def edit(repo: Path, old: str, new: str, rel: Path = AGENT_YAML) -> str:
    path = repo / rel
    path.write_text(path.read_text().replace(old, new, 1))
    return commit_all(repo, f"{old} -> {new}")


def publish(run: Any, clone: Path, reason: str = "go live") -> None:
    """A publish in the clone only: these tests push its refs by hand."""
    result = run("publish", AGENT, "-m", reason, "--no-push", repo=clone)
    assert result.code == 0, result.err


def publish_refs(n: int) -> list[str]:
    return [f"production/{AGENT}", f"refs/tags/{AGENT}/v{n}"]


def set_policy(run: Any, clone: Path, text: str = POLICY, user: str | None = None) -> None:
    (clone.parent / "policy.yaml").write_text(text)
    assert run("policy", "set", str(clone.parent / "policy.yaml"), repo=clone).code == 0
    done = push(clone, "refs/meta/agentstage", user=user)
    assert done.returncode == 0, done.stderr


# -- staging --------------------------------------------------------------------------------


def test_staging_fast_forward_is_accepted(clone: Path, server: Path) -> None:
    new = edit(clone, "temperature: 0.2", "temperature: 0.3")
    done = push(clone, "staging")
    assert done.returncode == 0, done.stderr
    assert git(server, "rev-parse", "staging") == new


def test_staging_non_fast_forward_and_delete_are_refused(clone: Path, server: Path) -> None:
    before = git(server, "rev-parse", "staging")
    git(clone, "commit", "-q", "--amend", "-m", "rewritten")
    refused(push(clone, "+staging"), "error: refs/heads/staging: not a fast-forward")
    refused(push(clone, ":staging"), "error: refs/heads/staging: staging is never deleted")
    assert git(server, "rev-parse", "staging") == before


def test_invalid_staging_push_is_refused_and_its_objects_quarantined(
        clone: Path, server: Path) -> None:
    before = tree_state(server)
    bad = edit(clone, "temperature: 0.2", "temperature: 7")
    done = push(clone, "staging")
    refused(done, "error: refs/heads/staging: invalid agent configuration",
            f"agents/{AGENT}/agent.yaml:", "model.temperature")
    assert "nothing was pushed" in done.stderr
    assert tree_state(server) == before
    assert subprocess.run(["git", "-C", str(server), "cat-file", "-e", bad],
                          check=False).returncode != 0  # never left the quarantine


def test_only_the_agents_a_push_changes_are_checked(run: Any, clone: Path, server: Path) -> None:
    """An agent already invalid on the server (put there around the hook) does not block a
    push that changes another agent; a push that touches it is checked."""
    other = clone / "agents" / "hr-helpdesk" / "agent.yaml"
    other.write_text(other.read_text().replace("  temperature:", "  temprature:", 1))
    commit_all(clone, "break hr-helpdesk")
    hook = server / "hooks" / "pre-receive"
    hook.rename(hook.with_suffix(".off"))
    assert push(clone, "staging").returncode == 0  # around the hook
    hook.with_suffix(".off").rename(hook)
    edit(clone, "temperature: 0.2", "temperature: 0.3")  # billing-support only
    done = push(clone, "staging")
    assert done.returncode == 0, done.stderr
    other.write_text(other.read_text() + "# still broken\n")
    commit_all(clone, "touch hr-helpdesk")
    refused(push(clone, "staging"), "agents/hr-helpdesk/agent.yaml", "temprature")


def test_other_refs_are_allowed_even_when_invalid(clone: Path, server: Path) -> None:
    edit(clone, "temperature: 0.2", "temperature: 7")
    done = push(clone, "HEAD:refs/heads/experiment", "HEAD:refs/tags/release-1.0")
    assert done.returncode == 0, done.stderr


# -- production and tags --------------------------------------------------------------------


def test_publish_pushed_with_its_tag_is_accepted(run: Any, clone: Path, server: Path) -> None:
    publish(run, clone)
    done = push(clone, *publish_refs(1))
    assert done.returncode == 0, done.stderr
    assert git(server, "rev-parse", PROD) == git(clone, "rev-parse", "staging")
    assert git(server, "cat-file", "-t", f"{AGENT}/v1") == "tag"
    edit(clone, "temperature: 0.2", "temperature: 0.4")
    assert push(clone, "staging").returncode == 0
    publish(run, clone, "second")
    assert push(clone, *publish_refs(2)).returncode == 0
    assert run("history", AGENT, "--format", "json", repo=server).json()[0]["version"] == 2


def test_production_without_its_tag_is_refused(run: Any, clone: Path, server: Path) -> None:
    publish(run, clone)
    refused(push(clone, f"production/{AGENT}"),
            f"error: {PROD}: production moves only with its publish record: push the annotated "
            f"tag refs/tags/{AGENT}/v1")
    git(clone, "tag", "-d", f"{AGENT}/v1")
    git(clone, "tag", f"{AGENT}/v1", "staging")  # lightweight
    refused(push(clone, *publish_refs(1)),
            f"error: refs/tags/{AGENT}/v1: a publish tag must be an annotated tag")
    assert git(server, "for-each-ref") == git(server, "for-each-ref", "refs/heads/staging")


def test_tag_without_production_and_wrong_number_are_refused(
        run: Any, clone: Path, server: Path) -> None:
    publish(run, clone)
    refused(push(clone, f"refs/tags/{AGENT}/v1"),
            f"error: refs/tags/{AGENT}/v1: a publish tag goes with its production ref")
    git(clone, "tag", "-a", "-m", "skip", f"{AGENT}/v3", "staging")
    refused(push(clone, f"production/{AGENT}", f"refs/tags/{AGENT}/v3"),
            f"error: refs/tags/{AGENT}/v3: not the next version: the next publish of {AGENT} "
            "is v1")


def test_tags_are_never_moved_or_deleted_and_production_never_deleted(
        run: Any, clone: Path, server: Path) -> None:
    publish(run, clone)
    assert push(clone, *publish_refs(1)).returncode == 0
    before = tree_state(server)
    git(clone, "tag", "-f", "-a", "-m", "moved", f"{AGENT}/v1", "staging~0")
    refused(push(clone, f"+refs/tags/{AGENT}/v1"), "publish tags are never moved")
    refused(push(clone, f":refs/tags/{AGENT}/v1"), "publish tags are never deleted")
    refused(push(clone, f":{PROD}"), f"production/{AGENT} is never deleted")
    assert tree_state(server) == before


def test_production_non_fast_forward_is_refused(run: Any, clone: Path, server: Path) -> None:
    edit(clone, "temperature: 0.2", "temperature: 0.3")
    assert push(clone, "staging").returncode == 0
    publish(run, clone)
    assert push(clone, *publish_refs(1)).returncode == 0
    git(clone, "commit", "-q", "--amend", "-m", "beside v1, not after it")
    beside = git(clone, "rev-parse", "HEAD")
    git(clone, "update-ref", PROD, beside)
    git(clone, "tag", "-a", "-m", "v2", f"{AGENT}/v2", beside)
    before = tree_state(server)
    refused(push(clone, f"+{PROD}", f"refs/tags/{AGENT}/v2"),
            f"error: {PROD}: not a fast-forward")
    assert tree_state(server) == before


def test_atomic_push_with_one_refused_ref_moves_nothing(run: Any, clone: Path,
                                                       server: Path) -> None:
    before = tree_state(server)
    edit(clone, "temperature: 0.2", "temperature: 0.3")  # a valid staging change ...
    publish(run, clone)
    git(clone, "tag", "-d", f"{AGENT}/v1")  # ... with a production move lacking its tag
    done = push(clone, "staging", f"production/{AGENT}", "HEAD:refs/heads/feature")
    refused(done, f"error: {PROD}:")
    assert "refs/heads/staging:" not in done.stderr  # only the refused ref is named
    assert tree_state(server) == before


# -- the policy -----------------------------------------------------------------------------


def test_policy_bootstrap_then_roles(run: Any, clone: Path, server: Path) -> None:
    set_policy(run, clone)  # no policy yet: anyone may create it
    shown = run("policy", "show", "--format", "json", repo=server).json()
    assert shown["policy"]["admins"] == ["alice"]
    assert shown["identity_variable"] == "REMOTE_USER"
    edit(clone, "temperature: 0.2", "temperature: 0.3")
    refused(push(clone, "staging"), "error: refs/heads/staging: no pusher identity",
            "$REMOTE_USER is unset")
    assert push(clone, "staging", user="carol").returncode == 0  # editors: "*"
    publish(run, clone)
    refused(push(clone, *publish_refs(1), user="carol"),
            f"error: {PROD}: carol may not publish {AGENT}")
    done = push(clone, *publish_refs(1), user="bob")
    assert done.returncode == 0, done.stderr


def test_policy_change_by_a_non_admin_is_refused(run: Any, clone: Path, server: Path) -> None:
    set_policy(run, clone)
    before = tree_state(server)
    (clone.parent / "mine.yaml").write_text(POLICY.replace("[alice]", "[bob]", 1))
    assert run("policy", "set", str(clone.parent / "mine.yaml"), repo=clone).code == 0
    refused(push(clone, "refs/meta/agentstage", user="bob"),
            "error: refs/meta/agentstage: only admins may change the policy, and bob is not one")
    assert tree_state(server) == before
    assert push(clone, "refs/meta/agentstage", user="alice").returncode == 0
    assert run("policy", "show", "--format", "json", repo=server).json()["policy"]["admins"] \
        == ["bob"]


def test_identity_variable_from_server_config(run: Any, clone: Path, server: Path) -> None:
    git(server, "config", "agentstage.identity", "GITEA_PUSHER")
    set_policy(run, clone)
    edit(clone, "temperature: 0.2", "temperature: 0.3")
    refused(push(clone, "staging", user="carol"), "$GITEA_PUSHER is unset")
    env = {**os.environ, "GITEA_PUSHER": "carol"}
    done = subprocess.run(["git", "-C", str(clone), "push", "origin", "staging"],
                          capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr


def test_invalid_policy_is_refused(run: Any, clone: Path, server: Path) -> None:
    (clone.parent / "bad.yaml").write_text("admins: [alice]\npublisher: {}\n")
    result = run("policy", "set", str(clone.parent / "bad.yaml"), repo=clone)
    assert result.code == 4
    assert "refs/meta/agentstage" not in git(clone, "for-each-ref")
    assert "policy.yaml:2: publisher: unknown field" in result.err


# -- publish --push -------------------------------------------------------------------------


def test_push_publish_accepted(run: Any, clone: Path, server: Path) -> None:
    result = run("publish", AGENT, "-m", "live", "--no-push", "--format", "json", repo=clone)
    push_published(Store.open(clone), "origin", result.json())
    assert git(server, "rev-parse", PROD) == git(clone, "rev-parse", PROD)


def test_refused_push_publish_puts_the_local_repository_back(
        run: Any, clone: Path, server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(run, clone)
    publish(run, clone, "first")
    assert push(clone, *publish_refs(1), user="alice").returncode == 0
    edit(clone, "temperature: 0.2", "temperature: 0.3")
    assert push(clone, "staging", user="carol").returncode == 0
    fetch(Store.open(clone), "origin")  # as publish does first: the server's pushers' notes
    local_before, server_before = tree_state(clone), tree_state(server)
    publish(run, clone, "carol tries")
    monkeypatch.setenv("REMOTE_USER", "carol")
    store = Store.open(clone)
    with pytest.raises(PolicyDenied) as caught:
        push_publish(store, "origin", AGENT, f"{AGENT}/v2")
    assert caught.value.exit_code == 7
    assert f"origin refused the publish of {AGENT}/v2" in caught.value.message
    assert f"carol may not publish {AGENT}" in caught.value.message
    assert tree_state(clone) == local_before
    assert tree_state(server) == server_before
    monkeypatch.setenv("REMOTE_USER", "bob")
    publish(run, clone, "bob publishes")
    push_publish(Store.open(clone), "origin", AGENT, f"{AGENT}/v2",
                 git(clone, "rev-parse", f"{AGENT}/v1^{{commit}}"))
    assert git(server, "rev-parse", f"{AGENT}/v2^{{commit}}") == git(clone, "rev-parse", "staging")


def test_server_hook_keeps_an_existing_pre_receive_and_feeds_it_the_push(
        run: Any, repo: Path, bare: Path) -> None:
    hooks = bare / "hooks"
    hooks.mkdir(exist_ok=True)
    theirs = '#!/bin/sh\ncat > "$GIT_DIR/seen"\nexit ${REFUSE:-0}\n'
    (hooks / "pre-receive").write_text(theirs)
    (hooks / "pre-receive").chmod(0o755)
    result = run("hooks", "install", "--server", repo=bare)
    assert result.code == 0 and "kept as pre-receive.local" in result.out
    git(repo, "remote", "add", "origin", str(bare))
    new = edit(repo, "temperature: 0.2", "temperature: 0.3")
    done = push(repo, "staging")
    assert done.returncode == 0, done.stderr
    assert (bare / "seen").read_text().split()[1:] == [new, "refs/heads/staging"]
    bad = edit(repo, "temperature: 0.3", "temperature: 7")
    refused(push(repo, "staging"), "invalid agent configuration")  # theirs passed, ours refused
    assert (bare / "seen").read_text().split()[1] == bad
    assert run("hooks", "uninstall", repo=bare).code == 0
    assert (hooks / "pre-receive").read_text() == theirs
