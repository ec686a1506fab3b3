"""Docs that cannot drift: every command has help with examples and is in the README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest

from agentstage.cli import cli
from conftest import ROOT

README = (ROOT / "README.md").read_text()


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if name == "hook":  # called by the hook scripts, not by people
            continue
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix}{name} ")
    return found


@pytest.mark.parametrize(("name", "command"), commands(cli), ids=lambda v: str(v))
def test_command_has_help_with_examples_and_is_in_readme(name: str, command: click.Command,
                                                        run: Any) -> None:
    assert command.help, f"{name} has no help"
    result = run(*name.split(), "--help")
    assert result.code == 0
    if not isinstance(command, click.Group):
        assert "Example" in result.out, f"{name} --help has no example"
    assert f"agentstage {name}" in README, f"the README does not show 'agentstage {name}'"


def test_readme_quick_start_is_two_commands() -> None:
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", README, re.S)
    assert block is not None
    lines = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == ["./dev.sh demo", "./dev.sh test"]


def test_readme_lists_every_exit_code() -> None:
    from agentstage import errors

    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.AgentstageError)}
    for code in codes | {0, 1}:
        assert re.search(rf"^\| {code} \|", README, re.M), f"exit code {code} not in README"


def test_ci_runs_the_readme_test_command() -> None:
    assert "./dev.sh test" in (ROOT / ".ci" / "run").read_text()


def test_version(run: Any) -> None:
    from agentstage import __version__

    result = run("--version")
    assert result.code == 0
    assert result.out.strip() == f"agentstage, version {__version__}"
    assert Path(ROOT / "pyproject.toml").read_text().count(f'version = "{__version__}"') == 1
