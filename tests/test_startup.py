"""Start-up: a command imports what it needs and no more (issue 13: `agentstage diff` and
the server hook within 2x of `python -c "import pygit2"`). Each test runs the command in
a new process under `-X importtime` and compares what it imported with what it needs, so
an import that creeps back to a module's top shows here, not in a benchmark months later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import commit_all, git

# What every command loads before it knows which command it is.
CLI = {"agentstage", "agentstage.cli", "agentstage.cli_approvals", "agentstage.cli_hooks",
       "agentstage.errors"}
# Reading and validating an agent at a commit.
# Reading an agent at a commit that earlier processes read (diskcache.py) ...
KNOWN = {"agentstage.agents", "agentstage.diskcache", "agentstage.faults", "agentstage.ids",
         "agentstage.layout", "agentstage.store", "agentstage.worktree", "agentstage.yamlload"}
# ... and reading a valid one for the first time (fastload.py): no validation library.
READ = KNOWN | {"agentstage.escape", "agentstage.fastload"}
DISPLAY = {"agentstage.escape"}  # the terminal's too
DIFF = CLI | READ | {"agentstage.publishing", "agentstage.render", "agentstage.semdiff"}
HOOK = CLI | READ | {"agentstage.hooks", "agentstage.meta", "agentstage.pushlog"}
# What only an invalid configuration needs: the models, to word its problems.
VALIDATION = {"pydantic", "agentstage.config", "agentstage.model"}
# Never for these commands: the network, the server, the pages.
NEVER = {"subprocess", "html", "fastapi", "starlette", "uvicorn", "jinja2", "httpx"}


def imported(args: list[str], cwd: Path, stdin: str | None = None) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentstage", *args],
                          cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def ours(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "agentstage" or m.startswith("agentstage.")}


def test_diff_imports_only_what_a_diff_needs(repo: Path) -> None:
    modules = imported(["diff", "billing-support"], repo)
    assert ours(modules) == DIFF
    assert modules.isdisjoint(VALIDATION | NEVER)  # valid: fastload.py reads it


def test_a_diff_of_configurations_read_before_imports_no_validation(repo: Path) -> None:
    imported(["diff", "billing-support"], repo)  # leaves both configurations on disk
    modules = imported(["diff", "billing-support"], repo)
    assert ours(modules) == DIFF - READ | KNOWN | DISPLAY
    assert modules.isdisjoint(VALIDATION | NEVER)


def test_the_server_hook_imports_only_what_checking_a_push_needs(repo: Path,
                                                                  bare: Path) -> None:
    old = git(repo, "rev-parse", "HEAD")
    path = repo / "agents" / "billing-support" / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.3"))
    new = commit_all(repo, "Warmer")
    git(repo, "push", "-q", str(bare), "staging")
    modules = imported(["hook", "pre-receive"], bare, f"{old} {new} refs/heads/staging\n")
    assert ours(modules) == HOOK
    assert "agentstage.render" not in modules and "agentstage.publishing" not in modules
    assert modules.isdisjoint(VALIDATION | NEVER - {"subprocess"})  # git: for a kept hook
    # the same commit again (the publish's push after staging's): nothing to validate
    modules = imported(["hook", "pre-receive"], bare, f"{old} {new} refs/heads/staging\n")
    assert ours(modules) == HOOK - READ | KNOWN
    assert modules.isdisjoint(VALIDATION)


def test_the_server_hook_with_a_policy_validates_it_once(repo: Path, bare: Path,
                                                        monkeypatch: Any) -> None:
    """On a real server there is a policy: its model is loaded for the first push after
    it changed, and read back from the disk cache after that (meta.read_policy)."""
    (repo / "policy.yaml").write_text("admins: [alice]\neditors: ['*']\n"
                                      "publishers: {'*': ['*']}\n")
    done = subprocess.run([sys.executable, "-m", "agentstage", "-C", str(bare), "policy", "set",
                           str(repo / "policy.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    old = git(repo, "rev-parse", "HEAD")
    path = repo / "agents" / "billing-support" / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.3"))
    new = commit_all(repo, "Warmer")
    git(repo, "push", "-q", str(bare), "staging")
    monkeypatch.setenv("REMOTE_USER", "alice")
    push = f"{old} {new} refs/heads/staging\n"
    imported(["hook", "pre-receive"], bare, push)  # leaves the policy on disk
    modules = imported(["hook", "pre-receive"], bare, push)
    assert modules.isdisjoint(VALIDATION | {"agentstage.policy"})


def test_help_imports_neither_git_nor_yaml_nor_pydantic(tmp_path: Path) -> None:
    modules = imported(["--help"], tmp_path)
    assert ours(modules) == CLI
    assert modules.isdisjoint({"pygit2", "pydantic", "ruamel.yaml", *NEVER})
