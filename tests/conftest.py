"""Fixtures: real git repositories in a sandbox with a pinned identity and no user config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from agentstage.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample-repo"
AUTHOR = "Test Author <test@example.com>"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: test_page skips without it


@pytest.fixture(autouse=True)
def _sandbox(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Author")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    monkeypatch.setenv("AGENTSTAGE_AUTHOR", AUTHOR)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("AGENTSTAGE_DEBUG", raising=False)
    # hooks and git's diff driver run `agentstage`: the venv's, as where it is installed;
    # the pusher's identity is set by the tests that push as someone
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep
                       + os.environ["PATH"])
    monkeypatch.delenv("REMOTE_USER", raising=False)
    import pygit2

    pygit2.settings.search_path[pygit2.enums.ConfigLevel.GLOBAL] = str(home)
    pygit2.settings.search_path[pygit2.enums.ConfigLevel.XDG] = str(home / ".config")
    pygit2.settings.search_path[pygit2.enums.ConfigLevel.SYSTEM] = str(home / "nosystem")


class Result(NamedTuple):
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI in-process: run("diff", "support-bot", repo=path) -> Result."""

    def _run(*args: str, repo: Path | None = None) -> Result:
        capsys.readouterr()
        argv = (["-C", str(repo)] if repo is not None else []) + list(args)
        code = main(argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


def git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def write_agent(root: Path, agent: str, files: dict[str, str]) -> Path:
    directory = root / "agents" / agent
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def commit_all(repo: Path, message: str = "edit") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def sample_repo(base: Path, name: str = "repo") -> Path:
    """base/name: a checkout on `staging` holding the three sample agents, in one commit."""
    path = base / name
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "staging")
    shutil.copytree(SAMPLE / "agents", path / "agents")
    commit_all(path, "Add sample agents")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A checkout on `staging` holding the three sample agents, in one commit."""
    yield sample_repo(tmp_path)


@pytest.fixture
def bare(repo: Path, tmp_path: Path) -> Path:
    """A bare clone of `repo` with its staging branch."""
    path = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium, one for a module of page tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


def hooked_server(base: Path, run: Any) -> tuple[Path, Path]:
    """A checkout of the sample agents, and a bare server with the server hook installed
    by `hooks install --server` and staging pushed to it through the hook."""
    source = sample_repo(base, "source")
    server = base / "server.git"
    git(base, "init", "-q", "--bare", "-b", "staging", str(server))
    assert run("hooks", "install", "--server", repo=server).code == 0
    git(source, "remote", "add", "origin", str(server))
    git(source, "push", "-q", "origin", "staging")
    return source, server


def copy_repo(template: Path, dest: Path, origin: Path | None = None) -> Path:
    """A copy of a repository built once per session (a test's own, cheaply); with
    *origin*, the copy's origin remote points there."""
    shutil.copytree(template, dest, symlinks=True)
    if origin is not None:
        git(dest, "remote", "set-url", "origin", str(origin))
    return dest


def tree_state(repo: Path) -> str:
    """Every ref and its target: compare before and after to prove nothing changed."""
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


__all__ = ["AUTHOR", "CHROMIUM", "ROOT", "SAMPLE", "Result", "commit_all", "copy_repo", "git",
           "hooked_server", "sample_repo", "tree_state", "write_agent"]
