"""One agent, one subtree: an agent's diff, publish, edit, revert and restore read that
agent's directory only. Shown on a repository whose other agents' trees and files are
missing from the object store: any read of them would fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from conftest import SAMPLE, git

A = "billing-support"
OTHERS = ("hr-helpdesk", "sales-assistant")


def loose_repo(tmp_path: Path) -> Path:
    """A bare repository whose objects are all loose (so single objects can be removed)."""
    work = tmp_path / "work"
    shutil.copytree(SAMPLE / "agents", work / "agents")
    git(work.parent, "init", "-q", "-b", "staging", str(work))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "agents")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "staging", str(bare))
    git(work, "push", "-q", str(bare), "staging")
    for pack in (bare / "objects" / "pack").glob("*.pack"):  # unpack a pack if push made one
        data = pack.read_bytes()
        for f in pack.parent.glob(pack.stem + ".*"):
            f.unlink()
        subprocess.run(["git", "-C", str(bare), "unpack-objects", "-q"], input=data, check=True)
    return bare


def remove_object(repo: Path, oid: str) -> None:
    path = repo / "objects" / oid[:2] / oid[2:]
    path.chmod(0o644)
    path.unlink()


def test_one_agents_operations_never_read_another_agents_objects(run: Any,
                                                                 tmp_path: Path) -> None:
    bare = loose_repo(tmp_path)
    assert run("publish", A, "-m", "v1", repo=bare).code == 0
    for other in OTHERS:
        tree = git(bare, "rev-parse", f"staging:agents/{other}")
        for line in git(bare, "ls-tree", tree).splitlines():
            remove_object(bare, line.split()[2])
        remove_object(bare, tree)
        assert subprocess.run(["git", "-C", str(bare), "cat-file", "-e", tree]).returncode != 0
    steps = [("set", A, "model.temperature=0.4"), ("diff", A), ("publish", A, "-m", "v2"),
             ("show", A, "--env", "production"), ("history", A),
             ("revert", A, "v2", "--preview"), ("restore", A, "v1"),
             ("publish", A, "-m", "v3"), ("revert", A, "v3"), ("publish", A, "-m", "v4")]
    for args in steps:
        done = run(*args, repo=bare)
        assert done.code == 0, (args, done.err)
    assert git(bare, "rev-parse", f"production/{A}") == git(bare, "rev-parse", "staging")
