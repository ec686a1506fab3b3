"""The rough edges a newcomer hit (issue 8): help, hints, colour, located shape errors,
the hook without agentstage on PATH, and validate going on past a bad directory name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import git

AGENT_YAML = "agents/billing-support/agent.yaml"


# -- the hook says how to install agentstage ---------------------------------------------------


def test_pre_commit_without_agentstage_on_path_says_how_to_install(run: Any,
                                                                   repo: Path) -> None:
    assert run("hooks", "install", repo=repo).code == 0
    path = "/usr/bin:/bin"
    assert shutil.which("git", path=path) and not shutil.which("agentstage", path=path)
    (repo / AGENT_YAML).write_text((repo / AGENT_YAML).read_text() + "# touched\n")
    git(repo, "add", "-A")
    head = git(repo, "rev-parse", "HEAD")
    done = subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "edit"],
                          capture_output=True, text=True, check=False,
                          env={"PATH": path, "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1",
                               "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com",
                               "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com"})
    assert done.returncode == 1
    assert done.stderr == (
        "error: the git hook pre-commit needs agentstage, which is not on PATH\n"
        "hint: pip install agentstage, or activate the environment that has it "
        "(source .venv/bin/activate)\n")
    assert "not found" not in done.stderr
    assert git(repo, "rev-parse", "HEAD") == head


# -- no arguments: help, exit 0 ------------------------------------------------------------------


@pytest.mark.parametrize(("args", "usage"), [
    ((), "Usage: agentstage [OPTIONS] COMMAND [ARGS]..."),
    (("hooks",), "Usage: agentstage hooks [OPTIONS] COMMAND [ARGS]..."),
    (("policy",), "Usage: agentstage policy [OPTIONS] COMMAND [ARGS]..."),
])
def test_no_subcommand_prints_help_and_exits_0(run: Any, args: tuple[str, ...],
                                               usage: str) -> None:
    result = run(*args)
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(usage + "\n")
    assert "Commands:" in result.out
    assert result.out == run(*args, "--help").out


# -- --color and NO_COLOR ----------------------------------------------------------------------

BOLD = "\x1b[1m"


def on_a_terminal(repo: Path, *args: str, no_color: str | None) -> str:
    """Run the CLI with its stdout on a pseudo-terminal; what it wrote there."""
    import os
    import pty

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color is not None:
        env["NO_COLOR"] = no_color
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                              stdout=follower, stderr=subprocess.PIPE, env=env, check=False,
                              timeout=60)
        os.close(follower)
        assert done.returncode == 0, done.stderr
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    return out.decode()


@pytest.mark.parametrize(("no_color", "args", "coloured"), [
    (None, (), True),
    ("", (), True),  # an empty NO_COLOR does not count (no-color.org)
    ("1", (), False),
    (None, ("--color", "never"), False),
    ("1", ("--color", "always"), True),
])
def test_colour_on_a_terminal(repo: Path, no_color: str | None, args: tuple[str, ...],
                              coloured: bool) -> None:
    out = on_a_terminal(repo, *args, "agents", no_color=no_color)
    assert (BOLD in out) == coloured
    assert "billing-support" in out


@pytest.mark.parametrize(("args", "coloured"), [
    ((), False), (("--color", "auto"), False), (("--color", "always"), True),
    (("--color=never",), False),
])
def test_colour_in_a_pipe(run: Any, repo: Path, monkeypatch: pytest.MonkeyPatch,
                          args: tuple[str, ...], coloured: bool) -> None:
    monkeypatch.delenv("NO_COLOR")
    result = run(*args, "agents", repo=repo)
    assert result.code == 0
    assert (BOLD in result.out) == coloured
    assert "billing-support" in result.out


def test_a_bad_color_value_is_a_usage_error(run: Any, repo: Path) -> None:
    result = run("--color", "sometimes", "agents", repo=repo)
    assert result.code == 2
    assert "'sometimes' is not one of 'auto', 'always', 'never'" in result.err
