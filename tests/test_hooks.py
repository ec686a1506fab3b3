"""Client hooks: install/uninstall, the pre-commit check through real `git commit`, and the
pre-commit framework manifest."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentstage.hooks import hook_script
from conftest import ROOT, git

AGENT = "billing-support"
AGENT_YAML = Path("agents") / AGENT / "agent.yaml"


def commit(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), "commit", "-q", *args], capture_output=True,
                          text=True, check=False)


def break_temperature(repo: Path) -> None:
    path = repo / AGENT_YAML
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 7"))


@pytest.mark.parametrize("name", ["pre-commit", "pre-receive"])
def test_hook_scripts_are_one_line_and_match_what_install_writes(name: str) -> None:
    assert (ROOT / "hooks" / name).read_text() == hook_script(name)
    assert (ROOT / "hooks" / name).stat().st_mode & 0o111


def test_install_is_idempotent_and_uninstall_removes_it(run: Any, repo: Path) -> None:
    first = run("hooks", "install", "--format", "json", repo=repo)
    assert first.code == 0, first.err
    assert first.json()["hooks"] == [{"hook": "pre-commit", "action": "installed"}]
    hook = repo / ".git" / "hooks" / "pre-commit"
    assert hook.read_text() == hook_script("pre-commit")
    again = run("hooks", "install", "--format", "json", repo=repo).json()
    assert again["hooks"] == [{"hook": "pre-commit", "action": "already installed"}]
    assert sorted(p.name for p in hook.parent.iterdir() if not p.name.endswith(".sample")) \
        == ["pre-commit"]
    assert run("hooks", "uninstall", repo=repo).code == 0
    assert not hook.exists()


def test_pre_commit_refuses_an_invalid_commit(run: Any, repo: Path) -> None:
    assert run("hooks", "install", repo=repo).code == 0
    head = git(repo, "rev-parse", "HEAD")
    break_temperature(repo)
    git(repo, "add", "-A")
    done = commit(repo, "-m", "too hot")
    assert done.returncode != 0
    assert f"agents/{AGENT}/agent.yaml:" in done.stderr
    assert "model.temperature" in done.stderr
    assert "error: 1 invalid agent: billing-support" in done.stderr
    assert git(repo, "rev-parse", "HEAD") == head


def test_pre_commit_reads_the_index_not_the_work_tree(run: Any, repo: Path) -> None:
    assert run("hooks", "install", repo=repo).code == 0
    path = repo / AGENT_YAML
    good = path.read_text()
    break_temperature(repo)
    git(repo, "add", "-A")
    path.write_text(good)  # fixed on disk only: the commit would still be invalid
    assert commit(repo, "-m", "staged bad").returncode != 0
    git(repo, "add", "-A")
    path.write_text(good.replace("temperature: 0.2", "temperature: 9"))
    git(repo, "add", "-A")
    path.write_text(good.replace("temperature: 0.2", "temperature: 0.3"))
    git(repo, "add", "-A")
    break_temperature(repo)  # broken on disk only: the staged version is valid
    done = commit(repo, "-m", "staged good")
    assert done.returncode == 0, done.stderr


def test_commit_all_checks_the_index_git_commits(run: Any, repo: Path) -> None:
    assert run("hooks", "install", repo=repo).code == 0
    break_temperature(repo)
    done = commit(repo, "-a", "-m", "too hot")  # git commits a temporary index here
    assert done.returncode != 0
    assert "model.temperature" in done.stderr


def test_pre_commit_checks_only_the_agents_touched(run: Any, repo: Path) -> None:
    break_temperature(repo)
    git(repo, "add", "-A")
    assert commit(repo, "-m", "already broken").returncode == 0  # no hook yet
    assert run("hooks", "install", repo=repo).code == 0
    other = repo / "agents" / "hr-helpdesk" / "agent.yaml"
    other.write_text(other.read_text() + "# a comment\n")
    git(repo, "add", "-A")
    done = commit(repo, "-m", "touch hr only")
    assert done.returncode == 0, done.stderr
    git(repo, "rm", "-q", "-r", f"agents/{AGENT}")
    assert commit(repo, "-m", "removing an agent is fine").returncode == 0


def test_pre_commit_refuses_a_symlink_in_an_agent(run: Any, repo: Path) -> None:
    assert run("hooks", "install", repo=repo).code == 0
    (repo / "agents" / AGENT / "extra.yaml").symlink_to("agent.yaml")
    git(repo, "add", "-A")
    done = commit(repo, "-m", "link")
    assert done.returncode != 0
    assert f"agents/{AGENT}/extra.yaml: symbolic links are not allowed" in done.stderr


def test_existing_hook_is_kept_chained_and_put_back(run: Any, repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    mine = "#!/bin/sh\necho mine ran >> \"$(git rev-parse --git-dir)/ran\"\nexit ${FAIL:-0}\n"
    (hooks / "pre-commit").write_text(mine)
    (hooks / "pre-commit").chmod(0o755)
    result = run("hooks", "install", repo=repo)
    assert result.code == 0
    assert "kept as pre-commit.local" in result.out
    assert (hooks / "pre-commit.local").read_text() == mine
    assert run("hooks", "install", repo=repo).code == 0  # idempotent, keeps the kept one
    assert (hooks / "pre-commit.local").read_text() == mine
    (repo / "note.txt").write_text("x\n")
    git(repo, "add", "-A")
    assert commit(repo, "-m", "both run").returncode == 0
    assert (repo / ".git" / "ran").read_text() == "mine ran\n"
    (repo / "note.txt").write_text("y\n")
    git(repo, "add", "-A")
    failing = subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "kept fails"],
                             capture_output=True, text=True, check=False,
                             env={**os.environ, "FAIL": "3"})
    assert failing.returncode != 0
    assert run("hooks", "uninstall", repo=repo).code == 0
    assert (hooks / "pre-commit").read_text() == mine
    assert not (hooks / "pre-commit.local").exists()


def test_install_refuses_to_clobber_when_the_kept_name_is_taken(run: Any, repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    (hooks / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "pre-commit.local").write_text("#!/bin/sh\nexit 0\n")
    result = run("hooks", "install", repo=repo)
    assert result.code == 5
    assert "is not agentstage's hook" in result.err
    assert (hooks / "pre-commit").read_text() == "#!/bin/sh\nexit 0\n"


def test_install_follows_core_hooks_path(run: Any, repo: Path) -> None:
    git(repo, "config", "core.hooksPath", "githooks")
    assert run("hooks", "install", repo=repo).code == 0
    assert (repo / "githooks" / "pre-commit").read_text() == hook_script("pre-commit")
    break_temperature(repo)
    git(repo, "add", "-A")
    assert commit(repo, "-m", "too hot").returncode != 0


def test_install_in_a_bare_repository_needs_server(run: Any, bare: Path) -> None:
    result = run("hooks", "install", repo=bare)
    assert result.code == 2
    assert "--server" in result.err
    assert run("hooks", "install", "--server", repo=bare).code == 0
    assert (bare / "hooks" / "pre-receive").read_text() == hook_script("pre-receive")


def test_pre_commit_framework_manifest_and_entry(repo: Path) -> None:
    from ruamel.yaml import YAML

    manifest = YAML(typ="safe", pure=True).load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (entry,) = [h for h in manifest if h["id"] == "agentstage-validate"]
    assert entry["entry"] == "agentstage validate"
    assert entry["pass_filenames"] is True
    files = re.compile(entry["files"])
    assert files.search(str(AGENT_YAML)) and not files.search("README.md")

    def run_entry(*names: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*shlex.split(entry["entry"]), *names], cwd=repo,
                              capture_output=True, text=True, check=False)

    names = [str(AGENT_YAML), f"agents/{AGENT}/tools.yaml", "agents/hr-helpdesk/agent.yaml"]
    ok = run_entry(*names)
    assert ok.returncode == 0, ok.stderr
    assert "2 agents valid" in ok.stdout
    break_temperature(repo)
    bad = run_entry(*names)
    assert bad.returncode == 4
    assert "model.temperature" in bad.stdout + bad.stderr
