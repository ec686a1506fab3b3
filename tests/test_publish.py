"""diff, publish and history through the real CLI on real repositories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import commit_all, git, tree_state

AGENT = "billing-support"
AGENT_YAML = Path("agents") / AGENT / "agent.yaml"


def edit_file(repo: Path, rel: Path, old: str, new: str, message: str = "edit") -> str:
    path = repo / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))
    return commit_all(repo, message)


def test_first_publish_creates_production_and_tag(run: Any, repo: Path) -> None:
    staging = git(repo, "rev-parse", "staging")
    result = run("publish", AGENT, "-m", "First release", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    data = result.json()
    assert data["published"] is True
    assert data["version"] == 1
    assert data["tag"] == f"{AGENT}/v1"
    assert data["previous"] is None
    assert data["commit"] == staging
    assert git(repo, "rev-parse", f"production/{AGENT}") == staging
    assert git(repo, "cat-file", "-t", f"{AGENT}/v1") == "tag"
    assert git(repo, "rev-parse", f"{AGENT}/v1^{{commit}}") == staging
    tagger = git(repo, "for-each-ref", "--format=%(taggername) %(taggeremail)",
                 f"refs/tags/{AGENT}/v1")
    assert tagger == "Test Author <test@example.com>"
    subject = git(repo, "for-each-ref", "--format=%(contents:subject)", f"refs/tags/{AGENT}/v1")
    assert subject == "First release"


def test_publish_refuses_when_nothing_changed(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    before = tree_state(repo)
    result = run("publish", AGENT, "-m", "two", "--format", "json", repo=repo)
    assert result.code == 3
    assert result.json() == {"agent": AGENT, "published": False, "has_changes": False}
    assert result.err.startswith("error: billing-support: staging is identical to production")
    assert tree_state(repo) == before


def test_diff_shows_only_changed_fields_and_publish_records_them(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    edit_file(repo, AGENT_YAML, "temperature: 0.2", "temperature: 0.4")
    result = run("diff", AGENT, "--format", "json", repo=repo)
    assert result.code == 0
    data = result.json()
    assert data["has_changes"] is True
    assert data["production"]["version"] == 1
    assert data["changes"] == [{"section": "settings", "path": "model.temperature",
                                "change": "modified", "production": 0.2, "staging": 0.4}]
    assert run("diff", AGENT, "--exit-code", repo=repo).code == 1
    published = run("publish", AGENT, "-m", "Warmer", "--format", "json", repo=repo).json()
    assert published["version"] == 2
    assert published["previous"] == f"{AGENT}/v1"
    assert published["changes"] == data["changes"]
    assert run("diff", AGENT, "--exit-code", repo=repo).code == 0


def test_publish_refuses_invalid_staging(run: Any, repo: Path) -> None:
    edit_file(repo, AGENT_YAML, "temperature: 0.2", "temperature: 7")
    before = tree_state(repo)
    result = run("publish", AGENT, "-m", "bad", repo=repo)
    assert result.code == 4
    assert f"agents/{AGENT}/agent.yaml:" in result.err
    assert "model.temperature" in result.err
    assert tree_state(repo) == before


def test_publish_refuses_when_production_is_not_an_ancestor(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    git(repo, "checkout", "-q", "-b", "side", f"production/{AGENT}")
    edit_file(repo, AGENT_YAML, "temperature: 0.2", "temperature: 0.9")
    git(repo, "update-ref", f"refs/heads/production/{AGENT}", "side")
    git(repo, "checkout", "-q", "staging")
    edit_file(repo, AGENT_YAML, "temperature: 0.2", "temperature: 0.3")
    before = tree_state(repo)
    result = run("publish", AGENT, "-m", "two", repo=repo)
    assert result.code == 5
    assert "not an ancestor of staging" in result.err
    assert tree_state(repo) == before


def test_publish_without_identity_is_refused(run: Any, repo: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSTAGE_AUTHOR")
    git(repo, "config", "--unset", "user.name", check=False)
    before = tree_state(repo)
    result = run("publish", AGENT, "-m", "one", repo=repo)
    assert result.code == 2
    assert result.err.startswith("error: no identity")
    assert "hint:" in result.err
    assert tree_state(repo) == before


def test_author_option_and_git_config_identity(run: Any, repo: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSTAGE_AUTHOR")
    git(repo, "config", "user.name", "Gita Config")
    git(repo, "config", "user.email", "gita@example.com")
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    entry = run("history", AGENT, "--format", "json", repo=repo).json()[0]
    assert entry["published_by"] == {"name": "Gita Config", "email": "gita@example.com"}
    edit_file(repo, AGENT_YAML, "temperature: 0.2", "temperature: 0.3")
    assert run("--author", "Ada L <ada@example.com>", "publish", AGENT, "-m", "two",
               repo=repo).code == 0
    entry = run("history", AGENT, "--format", "json", repo=repo).json()[0]
    assert entry["published_by"] == {"name": "Ada L", "email": "ada@example.com"}
    assert run("--author", "nobody", "publish", AGENT, "-m", "x", repo=repo).code == 2


def test_dry_run_changes_nothing(run: Any, repo: Path) -> None:
    before = tree_state(repo)
    result = run("publish", AGENT, "-m", "try", "--dry-run", "--format", "json", repo=repo)
    assert result.code == 0
    assert result.json()["dry_run"] is True
    assert result.json()["version"] == 1
    assert tree_state(repo) == before


@pytest.mark.parametrize(("args", "code"), [
    (["publish", "Bad_Id", "-m", "x"], 2),
    (["publish", "nosuch", "-m", "x"], 6),
    (["diff", "nosuch"], 6),
    (["diff", "../etc"], 2),
    (["history", "nosuch"], 6),
    (["history", "--since", "yesterday-ish"], 2),
    (["history", "--until", "2026-13-01"], 2),
    (["show", AGENT, "--env", "v9"], 6),
    (["show", AGENT, "--env", "production"], 6),
    (["show", AGENT, "--env", "vX"], 2),
])
def test_bad_input_exit_codes(run: Any, repo: Path, args: list[str], code: int) -> None:
    before = tree_state(repo)
    result = run(*args, repo=repo)
    assert result.code == code, result.err
    assert result.err.startswith("error: ")
    assert "Traceback" not in result.err
    assert tree_state(repo) == before


def test_unknown_repository_is_not_found(run: Any, tmp_path: Path) -> None:
    result = run("agents", repo=tmp_path / "nowhere")
    assert result.code == 6
    result = run("agents", repo=tmp_path)
    assert result.code == 6


def test_history_filters(run: Any, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTAGE_AUTHOR", "Alice Admin <alice@example.com>")
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    assert run("publish", "hr-helpdesk", "-m", "hr one", repo=repo).code == 0
    monkeypatch.setenv("AGENTSTAGE_AUTHOR", "Bob Builder <bob@example.com>")
    edit_file(repo, AGENT_YAML, "temperature: 0.2", "temperature: 0.3")
    assert run("publish", AGENT, "-m", "two", repo=repo).code == 0
    entries = run("history", "--format", "json", repo=repo).json()
    assert next(e["tag"] for e in entries) == f"{AGENT}/v2"
    assert {e["tag"] for e in entries} == {f"{AGENT}/v1", f"{AGENT}/v2", "hr-helpdesk/v1"}
    bob = run("history", "--author", "BOB", "--format", "json", repo=repo).json()
    assert [e["tag"] for e in bob] == [f"{AGENT}/v2"]
    by_mail = run("history", "--author", "alice@", "--format", "json", repo=repo).json()
    assert {e["tag"] for e in by_mail} == {f"{AGENT}/v1", "hr-helpdesk/v1"}
    one = run("history", AGENT, "--limit", "1", "--format", "json", repo=repo).json()
    assert [e["version"] for e in one] == [2]
    entry = one[0]
    assert set(entry) >= {"agent", "version", "tag", "commit", "published_by", "published_at",
                          "reason", "previous", "changes"}
    assert entry["reason"] == "two"
    assert entry["previous"] == f"{AGENT}/v1"
    assert entry["changes"][0]["path"] == "model.temperature"
    future = run("history", "--since", "2999-01-01", "--format", "json", repo=repo).json()
    assert future == []
    past = run("history", "--until", "2000-01-01", "--format", "json", repo=repo).json()
    assert past == []
    today = entries[0]["published_at"][:10]
    same_day = run("history", "--since", today, "--until", today, "--format", "json",
                   repo=repo).json()
    assert len(same_day) >= 1


def test_bare_repository_publish_and_history(run: Any, bare: Path) -> None:
    result = run("publish", AGENT, "-m", "from the server", "--format", "json", repo=bare)
    assert result.code == 0, result.err
    assert git(bare, "rev-parse", f"production/{AGENT}") == git(bare, "rev-parse", "staging")
    assert run("history", AGENT, "--format", "json", repo=bare).json()[0]["version"] == 1
    assert run("agents", "--format", "json", repo=bare).code == 0
    shown = run("show", AGENT, "--env", "production", "--format", "json", repo=bare).json()
    assert shown["name"] == "Billing Support Bot"


def test_agents_lists_versions_and_differences(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    rows = {r["agent"]: r for r in run("agents", "--format", "json", repo=repo).json()}
    assert rows[AGENT]["production"]["version"] == 1
    assert rows[AGENT]["staging_differs"] is False
    assert rows["hr-helpdesk"]["production"]["version"] is None
    assert rows["hr-helpdesk"]["staging_differs"] is True


def test_concurrent_publishers_exactly_one_wins(repo: Path) -> None:
    """Eight real processes publish the same agent at once: one v1, no gaps, no overwrite."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "agentstage", "-C", str(repo), "publish", AGENT,
                          "-m", f"racer {n}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(8)
    ]
    codes = [p.wait(timeout=60) for p in procs]
    errors = [p.stderr.read() for p in procs if p.stderr]
    assert codes.count(0) == 1, (codes, errors)
    assert all(c in (0, 3, 5) for c in codes), (codes, errors)
    assert all("Traceback" not in e for e in errors)
    tags = git(repo, "tag", "--list", f"{AGENT}/*").split()
    assert tags == [f"{AGENT}/v1"]
    assert git(repo, "rev-parse", f"{AGENT}/v1^{{commit}}") == git(
        repo, "rev-parse", f"production/{AGENT}")
    git(repo, "fsck", "--strict")


def test_publish_record_is_machine_readable(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "one", repo=repo).code == 0
    body = git(repo, "for-each-ref", "--format=%(contents)", f"refs/tags/{AGENT}/v1")
    reason, _, rest = body.partition("\n\n")
    assert reason == "one"
    marker, _, block = rest.partition("\n")
    assert marker == "agentstage-publish-record: 1"
    record = json.loads(block)
    assert record["agent"] == AGENT
    assert record["version"] == 1
    assert record["previous"] is None
    assert record["staging_commit"] == git(repo, "rev-parse", "staging")
    assert record["reverts"] == [] and record["restores"] == []


def test_crash_between_tag_and_production_is_completed_by_next_publish(run: Any,
                                                                       repo: Path) -> None:
    crashed = subprocess.run(
        [sys.executable, "-m", "agentstage", "-C", str(repo), "publish", AGENT, "-m", "one"],
        env={**os.environ, "AGENTSTAGE_CRASH_AT": "publish:after-tag"},
        capture_output=True, text=True, check=False)
    assert crashed.returncode == 137
    assert git(repo, "tag", "--list", f"{AGENT}/*") == f"{AGENT}/v1"
    assert git(repo, "rev-parse", "--verify", "-q", f"production/{AGENT}", check=False) == ""
    result = run("publish", AGENT, "-m", "again", repo=repo)
    assert result.code == 3
    assert "warning: completed an interrupted publish" in result.err
    assert git(repo, "rev-parse", f"production/{AGENT}") == git(repo, "rev-parse",
                                                                f"{AGENT}/v1^{{commit}}")
    assert git(repo, "tag", "--list", f"{AGENT}/*") == f"{AGENT}/v1"
    git(repo, "fsck", "--strict")
