"""doctor finds each fault a crash or a stray git command can leave, and repairs the safe ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import commit_all, git

AGENT = "billing-support"


def crash_publish(repo: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentstage", "-C", str(repo), "publish", AGENT, "-m", "one"],
        env={**os.environ, "AGENTSTAGE_CRASH_AT": "publish:after-tag"},
        capture_output=True, text=True, check=False)
    assert done.returncode == 137, done.stderr


def test_healthy_repository(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    result = run("doctor", repo=repo)
    assert result.code == 0, result.out
    assert result.out.startswith("healthy")


def test_interrupted_publish_is_found_and_repaired(run: Any, repo: Path) -> None:
    crash_publish(repo)
    result = run("doctor", "--format", "json", repo=repo)
    assert result.code == 1
    kinds = [f["kind"] for f in result.json()["findings"]]
    assert kinds == ["tag-without-production"]
    repaired = run("doctor", "--repair", repo=repo)
    assert repaired.code == 0, repaired.out
    assert "repaired" in repaired.out
    assert git(repo, "rev-parse", f"production/{AGENT}") == git(
        repo, "rev-parse", f"{AGENT}/v1^{{commit}}")
    assert run("doctor", repo=repo).code == 0


def test_stale_lock_is_found_and_removed(run: Any, repo: Path) -> None:
    lock = repo / ".git" / "refs" / "heads" / "staging.lock"
    lock.write_text("")
    result = run("set", AGENT, "model.temperature=0.3", repo=repo)
    assert result.code == 5
    assert "lock" in result.err and "hint: " in result.err
    assert run("doctor", repo=repo).code == 0  # young locks may belong to a live command
    result = run("doctor", "--lock-age", "0", repo=repo)
    assert result.code == 1
    assert "stale-lock" in result.out
    assert run("doctor", "--repair", "--lock-age", "0", repo=repo).code == 0
    assert not lock.exists()
    assert run("set", AGENT, "model.temperature=0.3", repo=repo).code == 0


def test_production_moved_without_publish_and_gaps_are_reported(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    path = repo / "agents" / AGENT / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.3"))
    commit = commit_all(repo, "sneaky")
    git(repo, "update-ref", f"refs/heads/production/{AGENT}", commit)
    git(repo, "tag", "-a", "-m", "forged", f"{AGENT}/v3", commit)
    report = run("doctor", "--repair", "--format", "json", repo=repo)
    assert report.code == 1
    kinds = {f["kind"] for f in report.json()["findings"]}
    assert {"version-gap", "bad-tag"} <= kinds
    assert all(not f["repaired"] for f in report.json()["findings"])
    assert git(repo, "rev-parse", f"production/{AGENT}") == commit  # nothing unsafe done


def test_invalid_staging_is_reported(run: Any, repo: Path) -> None:
    path = repo / "agents" / AGENT / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 9"))
    commit_all(repo, "bad")
    report = run("doctor", "--format", "json", repo=repo).json()
    assert report["healthy"] is False
    assert report["findings"][0]["kind"] == "invalid-config"
    assert report["findings"][0]["where"] == f"staging:agents/{AGENT}"
