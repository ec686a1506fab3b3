"""Who published, as the server knows it, and the git settings of the server: the
post-receive note naming the authenticated pusher of every publish, history showing it
(on the server and in a clone), the policy's users refusing a tagger who is not the
pusher, `hooks install --server` setting receive.fsckObjects and refusing protected
symbolic refs, and doctor checking both. All through real pushes to a real bare server."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentstage.remote import fetch
from agentstage.store import Store
from conftest import git, hooked_server, tree_state
from test_server import edit, push, refused, set_policy

AGENT = "billing-support"
NOTES = "refs/notes/agentstage-pushers"
ALICE = "Alice <alice@x>"
USERS_POLICY = """\
admins: [alice]
editors: ["*"]
publishers:
  "*": [alice, bob, carol]
users:
  alice: alice@example.com
  bob: [bob@example.com, bob@home.example]
"""


@pytest.fixture
def server(run: Any, tmp_path: Path) -> Path:
    """A bare server with `hooks install --server` and staging pushed through the hook."""
    return hooked_server(tmp_path, run)[1]


@pytest.fixture
def clone(server: Path, tmp_path: Path) -> Path:
    path = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(server), str(path))
    return path


def publish_push(run: Any, clone: Path, monkeypatch: pytest.MonkeyPatch, user: str,
                 author: str = ALICE, reason: str = "go live") -> Any:
    monkeypatch.setenv("REMOTE_USER", user)
    try:
        return run("--author", author, "publish", AGENT, "-m", reason, "--push", "origin",
                   repo=clone)
    finally:
        monkeypatch.delenv("REMOTE_USER")


# -- A. who pushed each publish -------------------------------------------------------------


def test_the_server_notes_the_authenticated_pusher_of_a_publish(
        run: Any, clone: Path, server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = publish_push(run, clone, monkeypatch, "bob")
    assert result.code == 0, result.err
    note = git(server, "notes", "--ref=agentstage-pushers", "show", f"{AGENT}/v1")
    assert note.splitlines()[0] == "pushed-by: bob"
    assert note.splitlines()[1].startswith("pushed-at: ")
    entry = run("history", AGENT, "--format", "json", repo=server).json()[0]
    assert entry["published_by"] == {"name": "Alice", "email": "alice@x"}
    assert entry["pushed_by"] == "bob"
    assert entry["pushed_at"] == note.splitlines()[1].removeprefix("pushed-at: ")
    text = run("history", AGENT, repo=server).out
    assert "Alice <alice@x> (pushed by bob)" in text


def test_history_names_the_pusher_only_when_it_is_someone_else(
        run: Any, clone: Path, server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = publish_push(run, clone, monkeypatch, "alice", "Alice <alice@example.com>")
    assert result.code == 0, result.err
    text = run("history", AGENT, repo=server).out
    assert "Alice <alice@example.com>" in text and "pushed by" not in text
    assert run("history", AGENT, "--format", "json", repo=server).json()[0]["pushed_by"] \
        == "alice"


def test_a_publish_pushed_without_an_identity_has_no_pusher(
        run: Any, clone: Path, server: Path) -> None:
    result = run("publish", AGENT, "-m", "go live", "--push", "origin", repo=clone)
    assert result.code == 0, result.err
    assert NOTES not in git(server, "for-each-ref")
    entry = run("history", AGENT, "--format", "json", repo=server).json()[0]
    assert entry["pushed_by"] is None and entry["pushed_at"] is None


def test_one_push_of_several_publishes_notes_each_and_later_pushes_add_to_the_notes(
        run: Any, clone: Path, server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert publish_push(run, clone, monkeypatch, "bob").code == 0
    edit(clone, "temperature: 0.2", "temperature: 0.3")
    assert push(clone, "staging").returncode == 0
    assert publish_push(run, clone, monkeypatch, "carol", reason="second").code == 0
    entries = run("history", AGENT, "--format", "json", repo=server).json()
    assert [(e["version"], e["pushed_by"]) for e in entries] == [(2, "carol"), (1, "bob")]
    assert git(server, "rev-list", "--count", NOTES) == "2"  # one notes commit per push


def test_a_clone_reads_the_pushers_after_publish_fetches_them(
        run: Any, clone: Path, server: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    assert publish_push(run, clone, monkeypatch, "bob").code == 0
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(server), str(other))
    assert run("history", AGENT, "--format", "json", repo=other).json()[0]["pushed_by"] is None
    fetch(Store.open(other), "origin")  # what publish runs first
    assert git(other, "rev-parse", NOTES) == git(server, "rev-parse", NOTES)
    assert run("history", AGENT, "--format", "json", repo=other).json()[0]["pushed_by"] == "bob"
    # the documented command for a clone that does not publish
    third = tmp_path / "third"
    git(tmp_path, "clone", "-q", str(server), str(third))
    git(third, "fetch", "-q", "origin", f"{NOTES}:{NOTES}")
    assert run("history", AGENT, "--format", "json", repo=third).json()[0]["pushed_by"] == "bob"


def test_clients_cannot_write_the_pushers_notes(
        run: Any, clone: Path, server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert publish_push(run, clone, monkeypatch, "bob").code == 0
    git(clone, "fetch", "-q", "origin", f"{NOTES}:{NOTES}")
    git(clone, "notes", "--ref=agentstage-pushers", "add", "-f", "-m", "pushed-by: alice",
        f"{AGENT}/v1")
    before = tree_state(server)
    refused(push(clone, f"+{NOTES}"), f"error: {NOTES}: {NOTES} is written by the server only")
    refused(push(clone, f":{NOTES}"), "written by the server only")
    refused(push(clone, f"HEAD:{NOTES}-x", "HEAD:refs/notes"), "written by the server only")
    assert tree_state(server) == before
    assert run("history", AGENT, "--format", "json", repo=server).json()[0]["pushed_by"] == "bob"


# -- A. the policy's users: the tagger must be the pusher -----------------------------------


def test_a_tagger_who_is_not_the_pusher_is_refused_when_the_policy_maps_users(
        run: Any, clone: Path, server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_policy(run, clone, USERS_POLICY, user="alice")
    before = tree_state(server)
    result = publish_push(run, clone, monkeypatch, "bob")
    assert result.code == 7, result.err
    assert "tagger alice@x is not bob (bob@example.com, bob@home.example): publish as " \
           "yourself" in result.err
    result = publish_push(run, clone, monkeypatch, "carol", "Carol <carol@example.com>")
    assert result.code == 7
    assert "the policy maps pushers to emails (users), and carol has none" in result.err
    assert tree_state(server) == before
    result = publish_push(run, clone, monkeypatch, "bob", "Bob <Bob@Home.Example>")
    assert result.code == 0, result.err
    entry = run("history", AGENT, "--format", "json", repo=server).json()[0]
    assert (entry["published_by"]["email"], entry["pushed_by"]) == ("Bob@Home.Example", "bob")


def test_policy_users_are_checked_and_shown(run: Any, tmp_path: Path, clone: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("admins: [alice]\nusers:\n  alice: not-an-email\n  bob: []\n")
    result = run("policy", "set", str(bad), repo=clone)
    assert result.code == 4
    assert "policy.yaml:3: users.alice.0: 'not-an-email' is not an email address" in result.err
    assert "policy.yaml:4: users.bob: List should have at least 1 item" in result.err
    good = tmp_path / "good.yaml"
    good.write_text(USERS_POLICY)
    assert run("policy", "set", str(good), repo=clone).code == 0
    shown = run("policy", "show", "--format", "json", repo=clone).json()
    assert shown["policy"]["users"] == {"alice": ["alice@example.com"],
                                        "bob": ["bob@example.com", "bob@home.example"]}
    assert "users:\n  alice: alice@example.com" in run("policy", "show", repo=clone).out


# -- B. hooks install --server: git's own checks and symbolic refs --------------------------


def _duplicate_entry_commit(repo: Path) -> str:
    """A commit whose root tree names `agents` twice (git fsck: duplicateEntries)."""
    agents = git(repo, "rev-parse", "HEAD:agents")
    raw = b"".join(b"40000 agents\0" + bytes.fromhex(agents) for _ in range(2))
    tree = subprocess.run(["git", "-C", str(repo), "hash-object", "-t", "tree", "--literally",
                           "-w", "--stdin"], input=raw, capture_output=True, check=True
                          ).stdout.decode().strip()
    return git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "two agents entries")


def test_install_server_sets_fsck_objects_so_git_refuses_malformed_trees(
        run: Any, tmp_path: Path) -> None:
    source, server = hooked_server(tmp_path, run)
    assert git(server, "config", "receive.fsckObjects") == "true"
    bad = _duplicate_entry_commit(source)
    done = push(source, f"{bad}:refs/heads/feature")  # a ref the hook leaves to the host
    assert done.returncode != 0
    assert "duplicateEntries" in done.stderr, done.stderr
    assert "refs/heads/feature" not in git(server, "for-each-ref")
    again = run("hooks", "install", "--server", repo=server)
    assert again.code == 0
    assert "git config receive.fsckObjects true: already set" in again.out
    assert "post-receive: already installed" in again.out


def test_install_server_output_and_json_list_what_was_set(run: Any, tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(server))
    git(server, "config", "receive.fsckObjects", "false")
    result = run("hooks", "install", "--server", repo=server)
    assert result.code == 0, result.err
    assert result.out.splitlines()[:2] == ["pre-receive: installed", "post-receive: installed"]
    assert "git config receive.fsckObjects true: set (was false)\n  why: git checks every " \
           "pushed object and refuses a malformed one" in result.out
    assert (server / "hooks" / "post-receive").read_text() == \
        (Path(__file__).parent.parent / "hooks" / "post-receive").read_text()
    shown = run("hooks", "install", "--server", "--format", "json", repo=server).json()
    assert shown["settings"][0]["key"] == "receive.fsckObjects"
    assert shown["settings"][0]["action"] == "already set"
    assert shown["symrefs"] == []


@pytest.mark.parametrize(("name", "target"), [
    ("refs/heads/main", "refs/heads/staging"),
    ("refs/heads/live", f"refs/heads/production/{AGENT}"),
    ("refs/heads/production/bot", "refs/heads/feature"),
    ("refs/heads/policy", "refs/meta/agentstage"),
])
def test_install_server_names_a_symbolic_ref_around_a_protected_ref(
        run: Any, tmp_path: Path, name: str, target: str) -> None:
    _source, server = hooked_server(tmp_path, run)
    git(server, "symbolic-ref", name, target)
    git(server, "symbolic-ref", "refs/heads/alias", "refs/heads/feature")  # harmless
    result = run("hooks", "install", "--server", repo=server)
    assert result.code == 5
    assert f"a push through a symbolic ref reaches a protected ref under another name: " \
           f"{name} -> {target}\n" in result.err
    assert f"hint: remove it: git -C {server} symbolic-ref --delete {name}\n" in result.err
    assert "refs/heads/alias" not in result.err
    assert "pre-receive: already installed" in result.out  # installed all the same
    git(server, "symbolic-ref", "--delete", name)
    assert run("hooks", "install", "--server", repo=server).code == 0


# -- C. doctor on the server ----------------------------------------------------------------


def test_doctor_checks_the_server_settings_hooks_and_symbolic_refs(
        run: Any, tmp_path: Path) -> None:
    _source, server = hooked_server(tmp_path, run)
    assert run("doctor", repo=server).code == 0
    git(server, "config", "--unset", "receive.fsckObjects")
    (server / "hooks" / "post-receive").unlink()
    git(server, "symbolic-ref", "refs/heads/main", "refs/heads/staging")
    result = run("doctor", "--format", "json", repo=server)
    assert result.code == 1
    found = {f["kind"]: f for f in result.json()["findings"]}
    assert set(found) == {"server-setting", "server-hook-missing", "protected-symref"}
    assert found["server-setting"]["fix"].endswith("config receive.fsckObjects true")
    assert "receive.fsckObjects is not set, should be true" in found["server-setting"]["message"]
    assert found["server-hook-missing"]["fix"].endswith("hooks install --server")
    assert "who pushed each publish is not recorded" in found["server-hook-missing"]["message"]
    assert found["protected-symref"]["where"] == "refs/heads/main"
    assert found["protected-symref"]["fix"].endswith("symbolic-ref --delete refs/heads/main")
    text = run("doctor", repo=server).out
    assert "receive.fsckObjects" in text and "refs/heads/main" in text
    git(server, "symbolic-ref", "--delete", "refs/heads/main")
    assert run("hooks", "install", "--server", repo=server).code == 0
    assert run("doctor", repo=server).code == 0


def test_doctor_accepts_transfer_fsck_objects_and_ignores_repositories_without_server_hooks(
        run: Any, tmp_path: Path, bare: Path) -> None:
    assert run("doctor", "--format", "json", repo=bare).json()["findings"] == []
    _source, server = hooked_server(tmp_path, run)
    git(server, "config", "--unset", "receive.fsckObjects")
    git(server, "config", "transfer.fsckObjects", "true")
    assert run("doctor", repo=server).code == 0


def test_an_existing_post_receive_is_kept_fed_the_push_and_cannot_stop_the_record(
        run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, server = hooked_server(tmp_path, run)
    theirs = '#!/bin/sh\ncat > "$GIT_DIR/seen"\nexit 3\n'
    (server / "hooks" / "post-receive").write_text(theirs)
    (server / "hooks" / "post-receive").chmod(0o755)
    result = run("hooks", "install", "--server", repo=server)
    assert "post-receive: installed (the existing hook is kept as post-receive.local" \
        in result.out
    git(source, "branch", "-u", "origin/staging", "staging")
    result = publish_push(run, source, monkeypatch, "bob")
    assert result.code == 0, result.err
    assert f"refs/tags/{AGENT}/v1" in (server / "seen").read_text().split()
    assert git(server, "notes", "--ref=agentstage-pushers", "show", f"{AGENT}/v1") \
        .startswith("pushed-by: bob\n")
    assert run("hooks", "uninstall", repo=server).code == 0
    assert (server / "hooks" / "post-receive").read_text() == theirs
