"""History is checked, not believed; production moves only to what was really published.
Each attack is a repository an attacker prepared, fetched or cloned by the victim, who then
runs the ordinary commands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from conftest import commit_all, git, tree_state

A = "billing-support"
PROD = f"refs/heads/production/{A}"
MARKER = "agentstage-publish-record: 1"


def forge_tag(repo: Path, name: str, commit: str, record: dict[str, Any] | None,
              who: str = "Alice Admin <alice@example.com>") -> None:
    message = "Looks legitimate" + (f"\n\n{MARKER}\n{json.dumps(record)}\n" if record is not None
                                    else "\n")
    name_part, _, email = who.partition(" <")
    env = {"GIT_COMMITTER_NAME": name_part, "GIT_COMMITTER_EMAIL": email.rstrip(">")}
    import os

    subprocess.run(["git", "-C", str(repo), "tag", "-a", name, commit, "-F", "-"],
                   input=message, text=True, check=True, env={**os.environ, **env})


def attacker_repo(run: Any, repo: Path) -> str:
    """The sample repository with billing-support v1 published, then a side commit that
    changes only the temperature (to an invalid value): returns the side commit."""
    assert run("publish", A, "-m", "v1", repo=repo).code == 0
    path = repo / "agents" / A / "agent.yaml"
    git(repo, "checkout", "-q", "-b", "side")
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 9"))
    side = commit_all(repo, "side")
    git(repo, "checkout", "-q", "staging")
    return side


def test_a_forged_record_is_shown_as_unverified_and_doctor_reports_it(
        run: Any, repo: Path, tmp_path: Path) -> None:
    side = attacker_repo(run, repo)
    forge_tag(repo, f"{A}/v2", side, {
        "agent": "other-agent", "version": 7, "previous": f"{A}/v1", "staging_commit": side,
        "changes": [{"section": "guardrails", "path": "guardrails[pii-redaction].enabled",
                     "change": "modified", "production": True, "staging": False}]})
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", str(repo), str(victim))

    entries = run("history", A, "--format", "json", repo=victim).json()
    forged = next(e for e in entries if e["tag"] == f"{A}/v2")
    assert forged["verified"] is False
    text = " ".join(forged["problems"])
    assert "other-agent" in text and "version 7" in text and "guardrails" in text
    assert next(e for e in entries if e["tag"] == f"{A}/v1")["verified"] is True
    shown = run("history", A, repo=victim).out
    assert "UNVERIFIED" in shown.split(f"{A}/v2")[1].split("\n")[0]

    doctor = run("doctor", "--format", "json", repo=victim)
    assert doctor.code == 1
    kinds = {f["kind"] for f in doctor.json()["findings"]}
    assert "unverified-record" in kinds


def test_a_fetched_tag_without_a_record_never_moves_production(
        run: Any, repo: Path, tmp_path: Path) -> None:
    side = attacker_repo(run, repo)
    forge_tag(repo, f"{A}/v2", side, None)
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(victim))  # the victim's own store
    git(victim, "fetch", "-q", str(repo), "refs/tags/*:refs/tags/*")
    production = git(victim, "rev-parse", PROD)
    assert run("set", A, "model.temperature=0.3", repo=victim).code == 0
    before = tree_state(victim)

    done = run("publish", A, "-m", "mine", repo=victim)
    assert done.code == 5, done.err
    assert f"{A}/v2" in done.err and "not a publish" in done.err
    assert git(victim, "rev-parse", PROD) == production
    assert tree_state(victim) == before

    repaired = run("doctor", "--repair", repo=victim)
    assert repaired.code == 1
    assert git(victim, "rev-parse", PROD) == production


def test_a_record_of_braces_is_not_completed_by_doctor(run: Any, repo: Path,
                                                        tmp_path: Path) -> None:
    side = attacker_repo(run, repo)
    forge_tag(repo, f"{A}/v2", side, {})
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(victim))
    git(victim, "fetch", "-q", str(repo), "refs/tags/*:refs/tags/*")
    production = git(victim, "rev-parse", PROD)
    repaired = run("doctor", "--repair", repo=victim)
    assert repaired.code == 1
    assert "healthy after repair" not in repaired.out
    assert git(victim, "rev-parse", PROD) == production


def test_trailers_that_name_no_real_publish_are_not_recorded(run: Any, repo: Path) -> None:
    assert run("publish", A, "-m", "v1", repo=repo).code == 0
    path = repo / "agents" / A / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.3"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"edit\n\nAgentstage-Revert: {A}/v1\n"
        f"Agentstage-Restore: {A}/v99\nAgentstage-Restore: {A}/v1\n")
    done = run("publish", A, "-m", "v2", "--format", "json", repo=repo)
    assert done.code == 0, done.err
    result = done.json()
    assert result["restores"] == []  # v99 does not exist; the tree is not v1's snapshot
    assert result["reverts"] == []  # reverting v1 (the first publish) removes the agent
    [entry, _] = run("history", A, "--format", "json", repo=repo).json()
    assert entry["verified"] is True and entry["restores"] == []
