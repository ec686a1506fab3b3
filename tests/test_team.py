"""A team: one bare server with the server hook, several clones made by `git clone`, pushes
between them. Every clone sees what the team published, a publish reaches the team, and a
clone that is behind cannot fork the versions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import git, hooked_server, tree_state

A = "billing-support"
PROD = f"refs/heads/production/{A}"


@pytest.fixture
def server(run: Any, tmp_path: Path) -> Path:
    _source, server = hooked_server(tmp_path / "base", run)
    return server


def clone(server: Path, name: str) -> Path:
    path = server.parent / name
    git(server.parent, "clone", "-q", str(server), str(path))
    return path


def edit(run: Any, repo: Path, assignment: str, message: str = "edit") -> None:
    done = run("set", A, assignment, "-m", message, repo=repo)
    assert done.code == 0, done.err


def server_view(run: Any, server: Path, *args: str) -> Any:
    done = run(*args, "--format", "json", repo=server)
    assert done.code == 0, done.err
    return done.json()


# -- 1. production and versions as the team sees them ----------------------------------------


def test_a_fresh_clone_agrees_with_the_server(run: Any, server: Path) -> None:
    alice = clone(server, "alice")
    edit(run, alice, "model.temperature=0.3")
    done = run("publish", A, "-m", "first", repo=alice)
    assert done.code == 0, done.err
    assert "pushed to origin" in done.out
    edit(run, alice, "model.temperature=0.4")
    assert run("publish", A, "-m", "second", repo=alice).code == 0

    bob = clone(server, "bob")
    assert git(bob, "for-each-ref", "refs/heads/production/") == ""  # only origin/production/*
    agents = run("agents", "--format", "json", repo=bob).json()
    row = next(r for r in agents if r["agent"] == A)
    assert row["production"]["version"] == 2 and row["staging_differs"] is False
    assert agents == server_view(run, server, "agents")
    text = run("agents", repo=bob).out
    assert f"{A}" in text and "v2" in text and "changed" not in text.split(A)[1].split("\n")[0]

    diff = run("diff", A, "--format", "json", repo=bob).json()
    assert diff["has_changes"] is False and diff["production"]["version"] == 2
    assert diff == server_view(run, server, "diff", A)
    assert "(?)" not in run("diff", A, repo=bob).out

    shown = run("show", A, "--env", "production", "--format", "json", repo=bob)
    assert shown.code == 0, shown.err
    assert shown.json() == server_view(run, server, "show", A, "--env", "production")
    assert run("history", A, "--format", "json", repo=bob).json() == \
        server_view(run, server, "history", A)

    doctor = run("doctor", repo=bob)
    assert doctor.code == 0, doctor.out
    assert "interrupted" not in doctor.out

    before = tree_state(bob)
    again = run("publish", A, "-m", "nothing new", repo=bob)
    assert again.code == 3, again.err
    assert "interrupted" not in again.err and "warning" not in again.err
    assert tree_state(bob) == before  # no local production ref made


def test_a_clone_sees_a_teammates_publish_after_fetch(run: Any, server: Path) -> None:
    alice, bob = clone(server, "alice"), clone(server, "bob")
    edit(run, alice, "model.temperature=0.3")
    assert run("publish", A, "-m", "alice", repo=alice).code == 0
    edit(run, bob, "description=Edited by bob")
    assert run("publish", A, "-m", "bob on a stale clone", "--no-push", repo=bob).code == 5
    git(bob, "pull", "-q", "--rebase", "origin", "staging")
    rows = run("agents", "--format", "json", repo=bob).json()
    assert next(r for r in rows if r["agent"] == A)["production"]["version"] == 1
    diff = run("diff", A, "--format", "json", repo=bob).json()
    assert [c["path"] for c in diff["changes"]] == ["description"]  # not alice's change


def test_doctor_tells_a_clone_behind_the_team_to_pull_not_to_merge(run: Any, server: Path
                                                                  ) -> None:
    alice, bob = clone(server, "alice"), clone(server, "bob")
    edit(run, alice, "model.temperature=0.3")
    assert run("publish", A, "-m", "alice", repo=alice).code == 0
    git(bob, "fetch", "-q", "--tags", "origin")  # bob sees the publish, not yet its staging
    before = git(bob, "for-each-ref", "--format=%(refname) %(objectname)")
    done = run("doctor", "--format", "json", repo=bob)
    assert done.code == 0, done.err  # a warning: nothing is wrong, bob has not pulled
    found = [f for f in done.json()["findings"] if f["kind"] in
             ("staging-behind", "not-fast-forward")]
    assert [(f["kind"], f["severity"], f["fix"]) for f in found] == \
        [("staging-behind", "warning", "git pull --ff-only origin")]
    assert git(bob, "for-each-ref", "--format=%(refname) %(objectname)") == before
    git(bob, "pull", "-q", "--ff-only", "origin")
    assert not [f for f in run("doctor", "--format", "json", repo=bob).json()["findings"]
                if f["kind"] == "staging-behind"]


# -- 2. publishing reaches the team -------------------------------------------------------------


def test_publish_pushes_production_tag_and_staging_atomically(run: Any, server: Path) -> None:
    alice = clone(server, "alice")
    edit(run, alice, "model.temperature=0.3")  # a local commit: staging is ahead of origin
    done = run("publish", A, "-m", "warmer", repo=alice)
    assert done.code == 0, done.err
    assert "pushed to origin (with staging, which was ahead)" in done.out
    for ref in ("refs/heads/staging", PROD, f"refs/tags/{A}/v1"):
        assert git(server, "rev-parse", ref) == git(alice, "rev-parse", ref)
    assert run("doctor", repo=alice).code == 0


def test_a_clone_behind_its_upstream_is_refused_and_cannot_fork_the_versions(
        run: Any, server: Path) -> None:
    alice, bob = clone(server, "alice"), clone(server, "bob")
    edit(run, alice, "model.temperature=0.3")
    assert run("publish", A, "-m", "alice v1", repo=alice).code == 0
    edit(run, alice, "model.temperature=0.4")
    assert run("publish", A, "-m", "alice v2", repo=alice).code == 0
    server_before = tree_state(server)

    done = run("publish", A, "-m", "bob, behind", repo=bob)
    assert done.code == 5, done.err
    assert "staging is behind origin/staging" in done.err
    assert "hint: run 'git pull --ff-only origin staging'" in done.err
    assert git(bob, "rev-parse", "staging") != git(server, "rev-parse", "staging")
    assert git(bob, "for-each-ref", "refs/heads/production/") == ""
    assert tree_state(server) == server_before
    # what bob does fetch is the team's: v1 and v2 as alice made them
    assert git(bob, "rev-parse", f"{A}/v2") == git(server, "rev-parse", f"{A}/v2")


def test_a_clone_that_diverged_is_refused_with_the_pull_to_run(run: Any, server: Path) -> None:
    alice, bob = clone(server, "alice"), clone(server, "bob")
    edit(run, alice, "model.temperature=0.3")
    assert run("publish", A, "-m", "alice", repo=alice).code == 0
    edit(run, bob, "description=Edited by bob")
    before = git(bob, "rev-parse", "staging")
    done = run("publish", A, "-m", "bob", repo=bob)
    assert done.code == 5
    assert "staging has diverged from origin/staging" in done.err
    assert "git pull --rebase origin staging" in done.err
    assert git(bob, "rev-parse", "staging") == before
    git(bob, "pull", "-q", "--rebase", "origin", "staging")
    done = run("publish", A, "-m", "bob after pull", repo=bob)
    assert done.code == 0, done.err
    assert git(server, "rev-parse", f"{A}/v2^{{commit}}") == git(bob, "rev-parse", "staging")


def test_no_push_publishes_locally_says_so_and_the_next_publish_asks_to_push_it(
        run: Any, server: Path) -> None:
    alice = clone(server, "alice")
    edit(run, alice, "model.temperature=0.3")
    git(alice, "push", "-q", "origin", "staging")
    server_before = tree_state(server)
    done = run("publish", A, "-m", "local try", "--no-push", repo=alice)
    assert done.code == 0, done.err
    assert "published in this clone only (--no-push)" in done.out
    assert f"git push --atomic origin {PROD} refs/tags/{A}/v1" in done.out
    assert tree_state(server) == server_before

    doctor = run("doctor", "--format", "json", repo=alice)
    assert doctor.code == 1
    [finding] = [f for f in doctor.json()["findings"] if f["severity"] == "problem"]
    assert finding["kind"] == "unpushed-publish"

    edit(run, alice, "model.temperature=0.5")
    again = run("publish", A, "-m", "on top", repo=alice)
    assert again.code == 5
    assert f"{A}/v1 was published in this clone but never pushed to origin" in again.err
    command = again.err.split("push it first: ")[1].split(";")[0]
    assert command == finding["fix"]
    git(alice, *command.split()[1:])
    assert run("doctor", repo=alice).code == 0
    done = run("publish", A, "-m", "on top", repo=alice)
    assert done.code == 0, done.err
    assert git(server, "rev-parse", f"{A}/v2") == git(alice, "rev-parse", f"{A}/v2")


def test_a_forked_version_is_a_conflict_and_doctor_says_how_to_fix_it(
        run: Any, server: Path) -> None:
    alice, bob = clone(server, "alice"), clone(server, "bob")
    edit(run, bob, "description=Edited by bob")
    assert run("publish", A, "-m", "bob, local", "--no-push", repo=bob).code == 0
    edit(run, alice, "model.temperature=0.3")
    assert run("publish", A, "-m", "alice", repo=alice).code == 0  # the team's v1

    done = run("publish", A, "-m", "bob again", repo=bob)
    assert done.code == 5
    assert f"the local tag {A}/v1 differs from origin's" in done.err
    assert git(bob, "rev-parse", f"{A}/v1") != git(server, "rev-parse", f"{A}/v1")

    doctor = run("doctor", "--format", "json", repo=bob)
    assert doctor.code == 1
    forked = [f for f in doctor.json()["findings"] if f["kind"] == "forked-version"]
    assert len(forked) == 1 and f"{A}/v1" in forked[0]["message"]
    fix = forked[0]["fix"].split(" (then")[0]
    for step in fix.split(" && "):
        git(bob, *step.split()[1:])
    git(bob, "pull", "-q", "--rebase", "origin", "staging")
    assert run("doctor", repo=bob).code == 0
    assert git(bob, "rev-parse", f"{A}/v1") == git(server, "rev-parse", f"{A}/v1")
    done = run("publish", A, "-m", "bob, now in line", repo=bob)
    assert done.code == 0, done.err
    assert git(server, "rev-parse", f"{A}/v2^{{commit}}") == git(bob, "rev-parse", "staging")


def test_a_refused_push_puts_the_clone_back_as_it_was(run: Any, server: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    alice = clone(server, "alice")
    (server / "hooks" / "pre-receive.local").write_text("#!/bin/sh\necho no >&2\nexit 1\n")
    (server / "hooks" / "pre-receive.local").chmod(0o755)
    edit(run, alice, "model.temperature=0.3")
    before = tree_state(alice)
    done = run("publish", A, "-m", "refused", repo=alice)
    assert done.code == 7, done.err
    assert "production/billing-support removed" in done.err
    assert tree_state(alice) == before  # no local production ref, no tag


def test_an_unreachable_remote_is_an_error_unless_no_push(run: Any, server: Path) -> None:
    alice = clone(server, "alice")
    git(alice, "remote", "set-url", "origin", str(server.parent / "gone.git"))
    edit(run, alice, "model.temperature=0.3")
    before = tree_state(alice)
    done = run("publish", A, "-m", "offline", repo=alice)
    assert done.code == 6
    assert "could not fetch from origin" in done.err
    assert tree_state(alice) == before
    done = run("publish", A, "-m", "offline", "--no-push", repo=alice)
    assert done.code == 0, done.err
    assert "warning: could not fetch from origin" in done.err
    doctor = run("doctor", repo=alice)
    assert "remote-unreachable" in doctor.out


# -- 3. retire ------------------------------------------------------------------------------


def test_retire_takes_an_agent_out_of_production_with_a_record(run: Any, server: Path) -> None:
    alice = clone(server, "alice")
    edit(run, alice, "model.temperature=0.3")
    assert run("publish", A, "-m", "v1", repo=alice).code == 0
    dry = run("retire", A, "--dry-run", "--format", "json", repo=alice)
    assert dry.code == 0, dry.err
    assert dry.json()["retired"] is True and dry.json()["dry_run"] is True
    assert git(alice, "ls-tree", "staging", f"agents/{A}") != ""  # a dry run changes nothing

    done = run("retire", A, "-m", "replaced by the new bot", repo=alice)
    assert done.code == 0, done.err
    assert done.out.startswith(f"Retired {A} v2")
    assert git(server, "ls-tree", PROD, f"agents/{A}") == ""
    assert git(server, "ls-tree", "staging", f"agents/{A}") == ""
    [entry, _] = run("history", A, "--format", "json", repo=alice).json()
    assert entry["retired"] is True and entry["reason"] == "replaced by the new bot"
    assert all(c["change"] == "removed" for c in entry["changes"])
    assert "(retired)" in run("history", A, repo=alice).out

    bob = clone(server, "bob")
    row = next(r for r in run("agents", "--format", "json", repo=bob).json()
               if r["agent"] == A)
    assert row["retired"] is True and row["staging_differs"] is False
    assert "retired (v2)" in run("agents", repo=bob).out
    shown = run("show", A, "--env", "production", repo=bob)
    assert shown.code == 6 and "retired" in shown.err
    assert run("retire", A, "-m", "again", repo=bob).code == 3
    assert run("doctor", repo=bob).code == 0


def test_an_agent_whose_first_publish_was_reverted_can_be_retired(run: Any, repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")  # work on staging without a checkout of it
    assert run("publish", A, "-m", "v1", repo=repo).code == 0
    assert run("revert", A, "v1", repo=repo).code == 0
    done = run("publish", A, "-m", "gone", repo=repo)
    assert done.code == 6
    assert f"hint: to take it out of production: agentstage retire {A}" in done.err
    done = run("retire", A, "-m", "gone", repo=repo)
    assert done.code == 0, done.err
    assert A not in [r["agent"] for r in run("agents", "--format", "json", repo=repo).json()
                     if not r["retired"]]


# -- publish rough edges ----------------------------------------------------------------------


def test_a_publish_of_comments_only_is_refused_unless_allow_empty(run: Any, repo: Path) -> None:
    assert run("publish", A, "-m", "v1", repo=repo).code == 0
    path = repo / "agents" / A / "agent.yaml"
    path.write_text("# a comment only\n" + path.read_text())
    git(repo, "commit", "-qam", "comment")
    before = tree_state(repo)
    done = run("publish", A, "-m", "comment", repo=repo)
    assert done.code == 3
    assert "only in comments or layout" in done.err and "--allow-empty" in done.err
    assert tree_state(repo) == before
    done = run("publish", A, "-m", "comment", "--allow-empty", repo=repo)
    assert done.code == 0, done.err
    assert git(repo, "rev-parse", PROD) == git(repo, "rev-parse", "staging")


def test_a_publish_warns_about_uncommitted_changes_to_the_agent(run: Any, repo: Path) -> None:
    path = repo / "agents" / A / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.9"))
    done = run("publish", A, "-m", "v1", repo=repo)
    assert done.code == 0, done.err
    assert f"warning: uncommitted changes to agents/{A}/agent.yaml are not part of this " \
           "publish" in done.err
    clean = run("publish", "hr-helpdesk", "-m", "v1", repo=repo)
    assert clean.code == 0 and "uncommitted" not in clean.err


def test_clones_publishing_at_once_cannot_fork_the_versions(run: Any, server: Path) -> None:
    """Four clones at the same staging publish the same agent at the same moment, as real
    processes: exactly one v1 on the server, every loser exits 5 or 3 and keeps no tag of
    its own."""
    import subprocess

    clones = [clone(server, f"c{i}") for i in range(4)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "agentstage", "-C", str(c), "--author", f"P{i} <p{i}@x>",
         "publish", A, "-m", f"clone {i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i, c in enumerate(clones)]
    codes = [p.wait(timeout=120) for p in procs]
    assert sorted(codes)[0] == 0 and codes.count(0) == 1, codes
    assert set(codes) <= {0, 3, 5}, [p.stderr.read() for p in procs if p.stderr]
    assert git(server, "tag", "--list", f"{A}/*").split() == [f"{A}/v1"]
    assert git(server, "rev-parse", PROD) == git(server, "rev-parse", f"{A}/v1^{{commit}}")
    for c in clones:
        local = git(c, "tag", "--list", f"{A}/*").split()
        if local:
            assert git(c, "rev-parse", f"{A}/v1") == git(server, "rev-parse", f"{A}/v1")
        assert run("publish", A, "-m", "again", repo=c).code == 3
        assert run("doctor", repo=c).code == 0


def test_an_unreachable_push_target_names_git_s_reason_and_puts_the_clone_back(
        run: Any, server: Path) -> None:
    alice = clone(server, "alice")
    edit(run, alice, "model.temperature=0.3")
    git(alice, "push", "-q", "origin", "staging")
    before = tree_state(alice)
    done = run("publish", A, "-m", "x", "--push", "/nonexistent/repo.git", repo=alice)
    assert done.code == 6, done.err
    assert "could not push to /nonexistent/repo.git: '/nonexistent/repo.git' does not " \
           "appear to be a git repository" in done.err
    assert "and the repository exists" not in done.err
    assert "production/billing-support removed" in done.err
    assert tree_state(alice) == before


def test_a_clone_without_a_local_staging_is_told_how_to_make_one(run: Any, server: Path) -> None:
    alice = clone(server, "alice")
    git(alice, "checkout", "-q", "-b", "main")
    git(alice, "branch", "-q", "-D", "staging")
    done = run("agents", repo=alice)
    assert done.code == 6
    assert "no local staging branch in this clone" in done.err
    assert "git branch --track staging origin/staging" in done.err
