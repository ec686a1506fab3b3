"""revert and restore of any publish, with previews, through the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import commit_all, git, tree_state

AGENT = "billing-support"
DIR = Path("agents") / AGENT
NEW_SOURCE = """\
- id: status-page
  type: website
  settings: {url: "https://status.example.com"}
"""


def edit(repo: Path, name: str, old: str, new: str) -> None:
    path = repo / DIR / name
    text = path.read_text()
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1))


def append(repo: Path, name: str, text: str) -> None:
    path = repo / DIR / name
    path.write_text(path.read_text() + text)


@pytest.fixture
def published(run: Any, repo: Path) -> Path:
    """v1 as sampled; v2 changes the temperature and adds a knowledge source; then staging
    edits the tone instruction (not part of any publish)."""
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    edit(repo, "agent.yaml", "temperature: 0.2", "temperature: 0.4")
    append(repo, "knowledge.yaml", NEW_SOURCE)
    commit_all(repo, "warmer, status page")
    assert run("publish", AGENT, "-m", "second", repo=repo).code == 0
    tone = (repo / DIR / "instructions.yaml").read_text()
    assert "- id: tone" in tone
    return repo


def staging_config(run: Any, repo: Path) -> dict[str, Any]:
    result = run("show", AGENT, "--env", "staging", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def test_revert_undoes_one_publish_and_keeps_later_edits(run: Any, published: Path) -> None:
    repo = published
    edit(repo, "agent.yaml", "name: Billing Support Bot", "name: Billing Bot")
    commit_all(repo, "rename")
    production = git(repo, "rev-parse", f"production/{AGENT}")
    result = run("revert", AGENT, "v2", "-m", "v2 broke refunds", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    config = staging_config(run, repo)
    assert config["model"]["temperature"] == 0.2
    assert [k["id"] for k in config["knowledge"]].count("status-page") == 0
    assert config["name"] == "Billing Bot"  # a later edit survives
    assert git(repo, "rev-parse", f"production/{AGENT}") == production  # production untouched
    message = git(repo, "log", "-1", "--format=%B", "staging")
    assert message.startswith(f"Revert {AGENT}/v2: second")
    assert "v2 broke refunds" in message
    assert f"Agentstage-Revert: {AGENT}/v2" in message
    assert git(repo, "status", "--porcelain") == ""  # the checkout followed
    published_next = run("publish", AGENT, "-m", "roll back v2", "--format", "json", repo=repo)
    assert published_next.json()["reverts"] == [f"{AGENT}/v2"]
    entry = run("history", AGENT, "--limit", "1", "--format", "json", repo=repo).json()[0]
    assert entry["reverts"] == [f"{AGENT}/v2"]


def test_revert_preview_writes_nothing_and_shows_both_diffs(run: Any, published: Path) -> None:
    repo = published
    before = tree_state(repo)
    result = run("revert", AGENT, f"{AGENT}/v2", "--preview", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    preview = result.json()
    assert preview["agent"] == AGENT
    assert preview["tag"] == f"{AGENT}/v2"
    assert preview["conflicts"] == []
    paths = {c["path"]: c for c in preview["staging"]["changes"]}
    assert paths["model.temperature"]["production"] == 0.4
    assert paths["model.temperature"]["staging"] == 0.2
    assert paths["knowledge[status-page]"]["change"] == "removed"
    assert {c["path"] for c in preview["production"]["changes"]} == set(paths)
    assert tree_state(repo) == before
    text = run("revert", AGENT, "v2", "--preview", repo=repo)
    assert text.code == 0
    assert "model.temperature" in text.out


def test_revert_conflict_names_fields_and_writes_nothing(run: Any, published: Path) -> None:
    repo = published
    edit(repo, "agent.yaml", "temperature: 0.4", "temperature: 0.9")
    commit_all(repo, "hotter")
    before = tree_state(repo)
    result = run("revert", AGENT, "v2", repo=repo)
    assert result.code == 5
    assert "model.temperature" in result.err
    assert "knowledge[status-page]" not in result.err
    assert tree_state(repo) == before
    preview = run("revert", AGENT, "v2", "--preview", "--format", "json", repo=repo).json()
    assert [c["path"] for c in preview["conflicts"]] == ["model.temperature"]


def test_revert_twice_says_already_undone(run: Any, published: Path) -> None:
    repo = published
    assert run("revert", AGENT, "v2", repo=repo).code == 0
    before = tree_state(repo)
    result = run("revert", AGENT, "v2", repo=repo)
    assert result.code == 3
    assert "already undone" in result.err
    assert tree_state(repo) == before


def test_revert_an_older_publish(run: Any, published: Path) -> None:
    repo = published
    edit(repo, "guardrails.yaml", "enabled: true", "enabled: false")
    commit_all(repo, "guardrail off")
    assert run("publish", AGENT, "-m", "third", repo=repo).code == 0
    result = run("revert", AGENT, "v2", repo=repo)
    assert result.code == 0, result.err
    config = staging_config(run, repo)
    assert config["model"]["temperature"] == 0.2
    assert config["guardrails"][0]["enabled"] is False  # v3's change survives


def test_restore_sets_the_snapshot_and_leaves_other_agents(run: Any, published: Path) -> None:
    repo = published
    other = repo / "agents/hr-helpdesk/agent.yaml"
    other.write_text(other.read_text().replace("access: private", "access: team", 1))
    commit_all(repo, "hr change")
    hr_before = git(repo, "rev-parse", "staging:agents/hr-helpdesk")
    result = run("restore", AGENT, "v1", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    assert git(repo, "rev-parse", f"staging:{DIR}") == git(repo, "rev-parse", f"{AGENT}/v1:{DIR}")
    assert git(repo, "rev-parse", "staging:agents/hr-helpdesk") == hr_before
    assert f"Agentstage-Restore: {AGENT}/v1" in git(repo, "log", "-1", "--format=%B")
    assert run("restore", AGENT, "v1", repo=repo).code == 3


def test_restore_preview(run: Any, published: Path) -> None:
    repo = published
    before = tree_state(repo)
    preview = run("restore", AGENT, "v1", "--preview", "--format", "json", repo=repo).json()
    assert {c["path"] for c in preview["staging"]["changes"]} == {
        "model.temperature", "knowledge[status-page]"}
    assert tree_state(repo) == before
    markdown = run("restore", AGENT, "v1", "--preview", "--format", "markdown", repo=repo)
    assert markdown.code == 0 and "model.temperature" in markdown.out


def test_revert_refuses_with_uncommitted_changes_in_checkout(run: Any,
                                                            published: Path) -> None:
    repo = published
    edit(repo, "agent.yaml", "Billing Support Bot", "Work In Progress")
    before = tree_state(repo)
    result = run("revert", AGENT, "v2", repo=repo)
    assert result.code == 5
    assert "uncommitted changes" in result.err
    assert f"{DIR}/agent.yaml" in result.err
    assert tree_state(repo) == before
    assert "Work In Progress" in (repo / DIR / "agent.yaml").read_text()


def test_revert_on_bare_repository(run: Any, published: Path, tmp_path: Path) -> None:
    bare = tmp_path / "server.git"
    git(published, "clone", "-q", "--bare", str(published), str(bare))
    git(bare, "fetch", "-q", str(published), "refs/tags/*:refs/tags/*",
        "refs/heads/*:refs/heads/*")
    result = run("revert", AGENT, "v2", repo=bare)
    assert result.code == 0, result.err
    shown = run("show", AGENT, "--format", "json", repo=bare).json()
    assert shown["model"]["temperature"] == 0.2


@pytest.mark.parametrize(("tag", "code"), [("v9", 6), ("hr-helpdesk/v1", 2), ("latest", 2),
                                           ("v0", 2)])
def test_bad_tags(run: Any, published: Path, tag: str, code: int) -> None:
    before = tree_state(published)
    for command in ("revert", "restore"):
        result = run(command, AGENT, tag, repo=published)
        assert result.code == code, result.err
        assert result.err.startswith("error: ")
    assert tree_state(published) == before


def test_revert_a_change_under_a_quoted_free_form_key(run: Any, published: Path) -> None:
    repo = published
    assert run("set", AGENT, 'model.parameters."top.k"=5', repo=repo).code == 0
    assert run("publish", AGENT, "-m", "third", repo=repo).code == 0
    diff = run("history", AGENT, "--limit", "1", "--format", "json", repo=repo).json()[0]
    assert diff["changes"][0]["path"] == 'model.parameters."top.k"'
    assert run("revert", AGENT, "v3", repo=repo).code == 0
    assert "top.k" not in staging_config(run, repo)["model"]["parameters"]
