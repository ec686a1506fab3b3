"""set, unset and new on staging without a checkout, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentstage.store import Store
from conftest import commit_all, git, tree_state

AGENT = "billing-support"
DIR = Path("agents") / AGENT


def staging_file(repo: Path, name: str) -> str:
    return git(repo, "show", f"staging:{DIR}/{name}")


def test_set_makes_one_commit_and_keeps_comments(run: Any, repo: Path) -> None:
    before = git(repo, "rev-parse", "staging")
    result = run("set", AGENT, "model.temperature=0.4", "tools[web-search].enabled=true",
                 "-m", "Warmer, with search", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    data = result.json()
    assert {c["path"] for c in data["changes"]} == {"model.temperature",
                                                    "tools[web-search].enabled"}
    assert git(repo, "rev-parse", "staging~1") == before
    assert git(repo, "log", "-1", "--format=%s", "staging") == "Warmer, with search"
    text = staging_file(repo, "agent.yaml")
    assert "  temperature: 0.4\n" in text
    assert "# Keep temperature low: billing answers must be consistent and factual." in text
    assert git(repo, "status", "--porcelain") == ""  # the checkout followed staging
    assert (repo / DIR / "agent.yaml").read_text().rstrip("\n") == text


def test_set_values_are_yaml(run: Any, repo: Path) -> None:
    assert run("set", AGENT, "description='0.3'", "tags=[a, b]", repo=repo).code == 0
    shown = run("show", AGENT, "--env", "staging", "--format", "json", repo=repo).json()
    assert shown["description"] == "0.3"
    assert shown["tags"] == ["a", "b"]


def test_set_adds_an_entry_and_unset_removes_it(run: Any, repo: Path) -> None:
    result = run("set", AGENT, "instructions[greeting].text=Say hello first.", repo=repo)
    assert result.code == 0, result.err
    shown = run("show", AGENT, "--env", "staging", "--format", "json", repo=repo).json()
    assert {"id": "greeting", "text": "Say hello first."} in shown["instructions"]
    assert run("unset", AGENT, "instructions[greeting]", "model.max_tokens", repo=repo).code == 0
    shown = run("show", AGENT, "--env", "staging", "--format", "json", repo=repo).json()
    assert all(i["id"] != "greeting" for i in shown["instructions"])
    assert shown["model"]["max_tokens"] is None


def test_set_text_from_file(run: Any, repo: Path, tmp_path: Path) -> None:
    text = "You are precise.\nNever guess amounts.\n"
    source = tmp_path / "persona.txt"
    source.write_text(text)
    assert run("set", AGENT, f"instructions[persona].text=@{source}", repo=repo).code == 0
    shown = run("show", AGENT, "--env", "staging", "--format", "json", repo=repo).json()
    persona = next(i for i in shown["instructions"] if i["id"] == "persona")
    assert persona["text"] == text


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["set", AGENT, "model.temperature=5"], 4, "model.temperature"),
    (["set", AGENT, "model.temprature=0.5"], 4, "did you mean temperature"),
    (["set", AGENT, "name="], 2, "unset"),
    (["set", AGENT, "noequals"], 2, "PATH=VALUE"),
    (["set", AGENT, "tools[].enabled=true"], 2, "tools[]"),
    (["set", AGENT, "access=everyone"], 4, "access"),
    (["set", "Bad_Id", "name=x"], 2, "agent id"),
    (["set", "nosuch", "name=x"], 6, "nosuch"),
    (["unset", AGENT, "name"], 4, "name"),
    (["set", AGENT, "instructions[persona].text=@/no/such/file"], 6, "/no/such/file"),
])
def test_bad_edits_change_nothing(run: Any, repo: Path, args: list[str], code: int,
                                  needle: str) -> None:
    before = tree_state(repo)
    result = run(*args, repo=repo)
    assert result.code == code, result.err
    assert result.err.startswith("error: ")
    assert needle in result.err
    assert "Traceback" not in result.err
    assert tree_state(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def test_set_same_value_makes_no_commit(run: Any, repo: Path) -> None:
    before = tree_state(repo)
    result = run("set", AGENT, "model.temperature=0.2", repo=repo)
    assert result.code == 0
    assert "no change" in result.out
    assert tree_state(repo) == before


def test_set_refuses_uncommitted_changes_to_the_same_agent(run: Any, repo: Path) -> None:
    path = repo / DIR / "agent.yaml"
    path.write_text(path.read_text().replace("Billing Support Bot", "WIP"))
    before = tree_state(repo)
    result = run("set", AGENT, "model.temperature=0.5", repo=repo)
    assert result.code == 5
    assert "uncommitted changes" in result.err and "hint: " in result.err
    assert tree_state(repo) == before
    assert "WIP" in path.read_text()
    # changes to another agent are not in the way
    other = repo / "agents/hr-helpdesk/agent.yaml"
    git(repo, "checkout", "--", str(path))
    other.write_text(other.read_text() + "\n")
    assert run("set", AGENT, "model.temperature=0.5", repo=repo).code == 0
    assert git(repo, "diff", "--name-only") == "agents/hr-helpdesk/agent.yaml"
    assert git(repo, "diff", "--cached", "--name-only") == ""


def test_set_on_bare_repository(run: Any, bare: Path) -> None:
    assert run("set", AGENT, "model.temperature=0.3", repo=bare).code == 0
    assert "temperature: 0.3" in git(bare, "show", f"staging:{DIR}/agent.yaml")


def test_staging_moved_between_read_and_write_is_a_conflict(
        run: Any, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer commits to staging after we read it: our write must fail, theirs stays."""
    original = Store.commit_agent

    def racing(self: Store, *args: Any, **kwargs: Any) -> str:
        made = original(self, *args, **kwargs)
        other = repo / "agents/hr-helpdesk/agent.yaml"
        other.write_text(other.read_text() + "# concurrent edit\n")
        commit_all(repo, "someone else")
        return made

    monkeypatch.setattr(Store, "commit_agent", racing)
    result = run("set", AGENT, "model.temperature=0.5", repo=repo)
    assert result.code == 5, result.err
    assert "moved" in result.err
    assert git(repo, "log", "-1", "--format=%s", "staging") == "someone else"
    assert "temperature: 0.2" in staging_file(repo, "agent.yaml")


def test_concurrent_set_processes_lose_no_acknowledged_edit(repo: Path) -> None:
    fields = [f"model.parameters.p{n}={n}" for n in range(8)]
    procs = [subprocess.Popen([sys.executable, "-m", "agentstage", "-C", str(repo), "set", AGENT,
                               f, "-m", f"edit {n}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n, f in enumerate(fields)]
    codes = [p.wait(timeout=60) for p in procs]
    assert all(c in (0, 5) for c in codes), codes
    assert codes.count(0) >= 1
    text = staging_file(repo, "agent.yaml")
    for n, code in enumerate(codes):
        if code == 0:
            assert f"p{n}: {n}" in text, (n, text)
    git(repo, "fsck", "--strict")


def test_new_agent_then_publish(run: Any, repo: Path) -> None:
    result = run("new", "faq-bot", "--name", "FAQ Bot", "--model", "gpt-4o-mini", repo=repo)
    assert result.code == 0, result.err
    assert run("validate", "--ref", "staging", "faq-bot", repo=repo).code == 0
    assert (repo / "agents/faq-bot/agent.yaml").is_file()  # the checkout followed
    assert run("publish", "faq-bot", "-m", "launch", repo=repo).code == 0
    assert run("new", "faq-bot", "--name", "Again", repo=repo).code == 5


def test_init_new_repository_and_adopt(run: Any, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    result = run("init", str(fresh), "--format", "json")
    assert result.code == 0, result.err
    assert git(fresh, "symbolic-ref", "HEAD") == "refs/heads/staging"
    assert git(fresh, "ls-tree", "--name-only", "staging") == "agents"
    assert run("init", str(fresh)).out.strip().endswith("already initialized: nothing to do")
    existing = tmp_path / "existing"
    existing.mkdir()
    git(existing, "init", "-q", "-b", "main")
    (existing / "README.md").write_text("hi\n")
    commit_all(existing, "first")
    result = run("init", str(existing))
    assert result.code == 0, result.err
    assert git(existing, "ls-tree", "--name-only", "staging") == "README.md\nagents"
    bare = tmp_path / "server.git"
    assert run("init", "--bare", str(bare)).code == 0
    assert git(bare, "rev-parse", "--is-bare-repository") == "true"
    assert git(bare, "ls-tree", "--name-only", "staging") == "agents"


def test_the_next_edit_completes_a_checkout_update_a_crash_interrupted(run: Any,
                                                                        repo: Path) -> None:
    import os

    crashed = subprocess.run(
        [sys.executable, "-m", "agentstage", "-C", str(repo), "set", AGENT,
         "model.temperature=0.5"],
        env={**os.environ, "AGENTSTAGE_CRASH_AT": "staging:after-move"},
        capture_output=True, text=True, check=False)
    assert crashed.returncode == 137
    assert "temperature: 0.5" in staging_file(repo, "agent.yaml")
    assert git(repo, "status", "--porcelain") != ""  # the checkout lags behind staging
    result = run("set", AGENT, "model.max_tokens=512", repo=repo)
    assert result.code == 0, result.err
    assert "warning: completed an interrupted update of the checkout" in result.err
    assert git(repo, "status", "--porcelain") == ""
    text = (repo / DIR / "agent.yaml").read_text()
    assert "temperature: 0.5" in text and "max_tokens: 512" in text


def test_a_real_uncommitted_change_is_not_mistaken_for_an_interrupted_update(
        run: Any, repo: Path) -> None:
    path = repo / DIR / "agent.yaml"
    git(repo, "commit", "-q", "--allow-empty", "-m", "empty")  # staging's parent has the same files
    path.write_text(path.read_text().replace("Billing Support Bot", "Mine"))
    git(repo, "add", str(path))
    result = run("set", AGENT, "model.temperature=0.5", repo=repo)
    assert result.code == 5
    assert "Mine" in path.read_text()
