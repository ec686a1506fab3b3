"""Trees are read strictly, the same way by every command and the server hook: sorted,
unique entry names without `/`, `agents` a real directory, agent directories holding only
regular files. The hostile trees are written byte by byte (`git hash-object --literally`),
as an attacker would, then read by the commands and pushed through the hook."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import git, hooked_server, tree_state

A = "billing-support"


def raw_tree(repo: Path, entries: list[tuple[str, bytes, str]]) -> str:
    """A tree object with exactly these (mode, name, id) entries, in this order."""
    data = b"".join(mode.encode() + b" " + name + b"\0" + bytes.fromhex(oid)
                    for mode, name, oid in entries)
    done = subprocess.run(["git", "-C", str(repo), "hash-object", "-t", "tree", "--literally",
                           "-w", "--stdin"], input=data, capture_output=True, check=True)
    return done.stdout.decode().strip()


def ls(repo: Path, rev: str) -> list[tuple[str, bytes, str]]:
    out = []
    for line in git(repo, "ls-tree", rev).splitlines():
        meta, name = line.split("\t")
        mode, _kind, oid = meta.split()
        out.append((mode.lstrip("0") if mode == "040000" else mode, name.encode(), oid))
    return out


def commit_with_agents(repo: Path, agents_tree: str, message: str = "hostile") -> str:
    """A commit on staging whose root is staging's with `agents` replaced."""
    root = [(m, n, o) if n != b"agents" else ("40000", b"agents", agents_tree)
            for m, n, o in ls(repo, "staging^{tree}")]
    tree = raw_tree(repo, root)
    commit = git(repo, "commit-tree", tree, "-p", "staging", "-m", message)
    git(repo, "update-ref", "refs/heads/staging", commit)
    return commit


def agents_entries(repo: Path) -> list[tuple[str, bytes, str]]:
    return ls(repo, "staging:agents")


def bad_invalid_agent(repo: Path) -> str:
    """The billing-support tree with an invalid agent.yaml."""
    blob = subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "--stdin"],
                          input=b"name: Bad\nmodel: {name: x, temperature: 9}\n",
                          capture_output=True, check=True).stdout.decode().strip()
    return raw_tree(repo, [("100644", b"agent.yaml", blob)])


HOSTILE = {
    # two entries named billing-support: the invalid one first, the valid one second
    "duplicate": lambda repo: [
        *(e for e in agents_entries(repo) if e[1] < A.encode()),
        ("40000", A.encode(), bad_invalid_agent(repo)),
        *(e for e in agents_entries(repo) if e[1] >= A.encode())],
    "unsorted": lambda repo: list(reversed(agents_entries(repo))),
    "slash": lambda repo: [*agents_entries(repo)[:1],
                           ("40000", b"billing-support/x", bad_invalid_agent(repo)),
                           *agents_entries(repo)[1:]],
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_malformed_agents_tree_is_refused_by_every_command(attack: str, run: Any,
                                                             bare: Path) -> None:
    commit_with_agents(bare, raw_tree(bare, HOSTILE[attack](bare)))
    before = tree_state(bare)
    for args in (("diff", A), ("publish", A, "-m", "x"), ("validate", "--ref", "staging"),
                 ("show", A, "--env", "staging"), ("agents",)):
        done = run(*args, repo=bare)
        assert done.code == 4, (args, done.err)
        assert "error: agents" in done.err, (args, done.err)
        assert "internal error" not in done.err
    assert tree_state(bare) == before


@pytest.mark.parametrize("mode", ["120000", "160000"])
def test_an_agent_directory_that_is_a_link_or_submodule_is_named(mode: str, run: Any,
                                                                  bare: Path) -> None:
    target = git(bare, "rev-parse", "staging") if mode == "160000" else subprocess.run(
        ["git", "-C", str(bare), "hash-object", "-w", "--stdin"], input=b"../../outside",
        capture_output=True, check=True).stdout.decode().strip()
    entries = [(mode, n, target) if n == A.encode() else (m, n, o)
               for m, n, o in agents_entries(bare)]
    commit_with_agents(bare, raw_tree(bare, entries))
    kind = "symbolic link" if mode == "120000" else "submodule"
    done = run("diff", A, repo=bare)
    assert done.code == 4
    assert f"error: agents/{A}: is a {kind}, not a directory" in done.err
    assert run("publish", A, "-m", "x", repo=bare).code == 4
    listing = run("validate", "--ref", "staging", repo=bare)
    assert listing.code == 4 and f"agents/{A}" in listing.out + listing.err


def test_agents_as_a_symbolic_link_is_refused(run: Any, bare: Path) -> None:
    link = subprocess.run(["git", "-C", str(bare), "hash-object", "-w", "--stdin"],
                          input=b"/etc", capture_output=True, check=True).stdout.decode().strip()
    root = [("120000", n, link) if n == b"agents" else (m, n, o)
            for m, n, o in ls(bare, "staging^{tree}")]
    git(bare, "update-ref", "refs/heads/staging",
        git(bare, "commit-tree", raw_tree(bare, root), "-p", "staging", "-m", "link"))
    for args in (("agents",), ("diff",), ("new", "helper", "--name", "Helper")):
        done = run(*args, repo=bare)
        assert done.code == 4, (args, done.err)
        assert "error: agents: is a symbolic link, not a directory" in done.err


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_the_server_hook_refuses_a_malformed_tree(attack: str, run: Any, tmp_path: Path) -> None:
    source, server = hooked_server(tmp_path, run)
    git(server, "config", "receive.fsckObjects", "false")  # the hook holds without git's check
    commit_with_agents(source, raw_tree(source, HOSTILE[attack](source)))
    before = tree_state(server)
    done = subprocess.run(["git", "-C", str(source), "push", "origin", "staging"],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "refs/heads/staging" in done.stderr and "agents" in done.stderr
    assert "internal error" not in done.stderr
    assert tree_state(server) == before
