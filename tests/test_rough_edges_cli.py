"""The rough edges a newcomer hit (issue 8): help, hints, colour, located shape errors,
the hook without agentstage on PATH, and validate going on past a bad directory name."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

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
