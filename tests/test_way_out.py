"""Always a way out (issue 8): every state the tool can reach has a command that leaves it.

An invalid agent can be repaired with set/unset; `new` never makes an orphan staging;
`init` adopts the agents of the default branch; a revert conflict names both values and
the snapshot to go back to, and its preview says so and exits 5.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import SAMPLE, commit_all, git, tree_state

AGENT = "billing-support"
DIR = Path("agents") / AGENT
TYPO = "  temperature: 0.2\n"


def edit(repo: Path, name: str, old: str, new: str) -> None:
    path = repo / DIR / name
    text = path.read_text()
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1))


def staging_file(repo: Path, name: str) -> str:
    return git(repo, "show", f"staging:{DIR}/{name}")


def break_agent(repo: Path, *typos: tuple[str, str]) -> None:
    """Commit typos (old, new) in agent.yaml straight to staging, as a push could."""
    for old, new in typos:
        edit(repo, "agent.yaml", old, new)
    commit_all(repo, "typos")


TEMPRATURE = ("  temperature: 0.2\n", "  temprature: 0.2\n")
ACESS = ("access: team\n", "acess: team\n")


# -- 1. set and unset repair an invalid agent ---------------------------------------------


def test_unset_removes_the_typo_it_used_to_refuse_for(run: Any, repo: Path) -> None:
    break_agent(repo, ("  temperature: 0.2\n", "  temperature: 0.2\n  temprature: 0.9\n"))
    assert run("validate", repo=repo).code == 4
    result = run("unset", AGENT, "model.temprature", "-m", "fix the typo", repo=repo)
    assert result.code == 0, result.err
    assert result.err == ""  # valid again: nothing left to warn about
    assert "temprature" not in staging_file(repo, "agent.yaml")
    assert "# Keep temperature low" in staging_file(repo, "agent.yaml")  # comments kept
    assert git(repo, "log", "-1", "--format=%s", "staging") == "fix the typo"
    assert run("validate", "--ref", "staging", repo=repo).code == 0
    assert git(repo, "status", "--porcelain") == ""  # the checkout followed


def test_set_that_makes_an_invalid_agent_valid_is_taken(run: Any, repo: Path) -> None:
    break_agent(repo, ("access: team\n", "access: everyone\n"))
    result = run("set", AGENT, "access=organization", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    assert result.json()["changes"] == [{"section": "settings", "path": "access",
                                         "change": "modified", "production": "everyone",
                                         "staging": "organization"}]
    assert "problems" not in result.json()
    assert run("publish", AGENT, "-m", "fixed", repo=repo).code == 0


def test_an_edit_that_leaves_fewer_problems_is_committed_with_a_warning(run: Any,
                                                                       repo: Path) -> None:
    break_agent(repo, TEMPRATURE, ACESS)
    before = git(repo, "rev-parse", "staging")
    result = run("unset", AGENT, "model.temprature", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    assert git(repo, "rev-parse", "staging^") == before  # one commit
    assert result.err.startswith("warning: billing-support still has 1 problem on staging")
    assert "agents/billing-support/agent.yaml:" in result.err
    assert "acess: unknown field (did you mean access?)" in result.err
    assert "temprature" not in result.err
    out = result.json()
    assert [p["path"] for p in out["problems"]] == ["acess"]
    assert [c["path"] for c in out["changes"]] == ["model.temprature"]
    fixed = run("unset", AGENT, "acess", repo=repo)  # the next step out
    assert fixed.code == 0 and fixed.err == ""
    assert run("set", AGENT, "access=team", "model.temperature=0.2", repo=repo).code == 0
    assert run("validate", "--ref", "staging", repo=repo).code == 0


BAD_ACCESS = ("access: team\n", "access: everyone\n")
NO_NAME = ("name: Billing Support Bot\n", "name: ''\n")


@pytest.mark.parametrize(("args", "needle"), [
    (["set", AGENT, "model.max_tokens=2048"], "already had 3 problems"),  # no better
    (["set", AGENT, "model.temprature=0.5"], "model.temprature"),  # still the same three
    (["set", AGENT, "access=team", "name=Bot", "model.temperature=7"],  # fewer, one new
     "model.temperature: "),
    (["set", AGENT, "access=team", "name=Bot", "model.max_tokens=0"], "model.max_tokens: "),
    (["unset", AGENT, "model.temprature", "name"], "name: required"),  # fewer, one new
])
def test_an_edit_that_is_no_better_is_refused_and_changes_nothing(
        run: Any, repo: Path, args: list[str], needle: str) -> None:
    break_agent(repo, TEMPRATURE, BAD_ACCESS, NO_NAME)
    before = tree_state(repo)
    result = run(*args, repo=repo)
    assert result.code == 4, result.err
    assert result.err.startswith("error: ")
    assert needle in result.err
    assert "hint: " in result.err
    assert tree_state(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def test_an_edit_of_a_valid_agent_that_breaks_it_is_refused_as_before(run: Any,
                                                                       repo: Path) -> None:
    before = tree_state(repo)
    result = run("set", AGENT, "model.temprature=0.5", repo=repo)
    assert result.code == 4
    assert "did you mean temperature" in result.err
    assert "already had" not in result.err
    assert tree_state(repo) == before


def test_fixing_every_problem_in_one_command_is_taken(run: Any, repo: Path) -> None:
    break_agent(repo, TEMPRATURE, ACESS)
    result = run("unset", AGENT, "model.temprature", "acess", repo=repo)
    assert result.code == 0, result.err
    assert result.err == ""
    assert run("validate", "--ref", "staging", repo=repo).code == 0


def test_repair_in_a_bare_repository(run: Any, repo: Path, tmp_path: Path) -> None:
    break_agent(repo, TEMPRATURE)
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    assert run("set", AGENT, "model.max_tokens=10", repo=bare).code == 4  # no better
    result = run("unset", AGENT, "model.temprature", repo=bare)
    assert result.code == 0, result.err
    assert run("validate", "--ref", "staging", repo=bare).code == 0


def test_a_file_that_is_not_yaml_is_refused_with_the_way_out(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    (repo / DIR / "agent.yaml").write_text("name: [Billing\nmodel: {name: gpt-4o}\n")
    commit_all(repo, "broken")
    before = tree_state(repo)
    result = run("set", AGENT, "name=Billing", repo=repo)
    assert result.code == 4
    assert result.err.startswith(f"error: {DIR}/agent.yaml:")
    assert "invalid YAML" in result.err
    assert "fix it in a checkout" in result.err
    assert f"agentstage restore {AGENT} v1" in result.err
    assert tree_state(repo) == before


def test_a_missing_agent_yaml_is_recreated_by_set(run: Any, repo: Path) -> None:
    git(repo, "rm", "-q", str(DIR / "agent.yaml"))
    commit_all(repo, "lost agent.yaml")
    before = tree_state(repo)
    result = run("set", AGENT, "name=Billing", repo=repo)  # still a problem: no model
    assert result.code == 4
    assert "model: required field is missing" in result.err
    assert "restore" not in result.err  # never published: no snapshot to offer
    assert tree_state(repo) == before
    result = run("set", AGENT, "name=Billing", "model.name=gpt-4o", repo=repo)
    assert result.code == 0, result.err
    assert run("validate", "--ref", "staging", repo=repo).code == 0


def test_restore_leaves_an_invalid_staging(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    break_agent(repo, TEMPRATURE, ACESS)
    before = tree_state(repo)
    preview = run("restore", AGENT, "v1", "--preview", "--format", "json", repo=repo)
    assert preview.code == 0, preview.err
    assert {c["path"] for c in preview.json()["staging"]["changes"]} == {
        "model.temprature", "model.temperature", "acess", "access"}
    assert preview.json()["production"]["has_changes"] is False
    assert tree_state(repo) == before
    result = run("restore", AGENT, "v1", repo=repo)
    assert result.code == 0, result.err
    assert run("validate", "--ref", "staging", repo=repo).code == 0
    assert run("diff", AGENT, "--exit-code", repo=repo).code == 0


# -- 2 and 3. new needs staging; init makes it from the default branch ------------------


def _main_repo(path: Path) -> Path:
    """A checkout whose only branch is `main`, holding the three sample agents."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    shutil.copytree(SAMPLE / "agents", path / "agents")
    commit_all(path, "agents on main")
    return path


def test_new_without_staging_refuses_then_init_adopts_main(run: Any, tmp_path: Path) -> None:
    repo = _main_repo(tmp_path / "repo")
    main = git(repo, "rev-parse", "main")
    before = tree_state(repo)
    result = run("new", "bot2", "--name", "Bot 2", repo=repo)
    assert result.code == 6
    assert result.err.startswith("error: no staging branch")
    assert "hint: run 'agentstage init'" in result.err
    assert tree_state(repo) == before
    result = run("init", repo=repo)
    assert result.code == 0, result.err
    assert f"created branch staging from main ({main[:12]}) with 3 agents" in result.out
    assert git(repo, "rev-parse", "staging") == main
    assert git(repo, "rev-parse", "main") == main
    assert run("new", "bot2", "--name", "Bot 2", repo=repo).code == 0
    assert git(repo, "ls-tree", "--name-only", "staging", "agents/").split() == [
        "agents/billing-support", "agents/bot2", "agents/hr-helpdesk", "agents/sales-assistant"]
    again = run("init", "--format", "json", repo=repo)
    assert again.code == 0
    assert again.json()["actions"] == ["already initialized: nothing to do"]


def test_init_adopts_main_in_a_bare_repository(run: Any, tmp_path: Path) -> None:
    source = _main_repo(tmp_path / "source")
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    git(bare, "symbolic-ref", "HEAD", "refs/heads/master")  # HEAD unborn: main holds agents
    main = git(bare, "rev-parse", "main")
    before = tree_state(bare)
    result = run("new", "bot2", "--name", "Bot 2", repo=bare)
    assert result.code == 6 and "agentstage init" in result.err
    assert tree_state(bare) == before
    result = run("init", "--format", "json", repo=bare)
    assert result.code == 0, result.err
    out = result.json()
    assert out["actions"] == [f"created branch staging from main ({main[:12]}) with 3 agents"]
    assert out["adopted"] == {"from": "main", "commit": main,
                              "agents": ["billing-support", "hr-helpdesk", "sales-assistant"]}
    assert git(bare, "rev-parse", "staging") == main
    assert run("new", "bot2", "--name", "Bot 2", repo=bare).code == 0
    assert run("init", repo=bare).out.strip().endswith("already initialized: nothing to do")


def test_init_prefers_the_branch_with_agents(run: Any, tmp_path: Path) -> None:
    repo = _main_repo(tmp_path / "repo")
    git(repo, "switch", "-q", "--orphan", "docs")
    (repo / "README.md").write_text("docs\n")
    commit_all(repo, "docs only")
    result = run("init", repo=repo)
    assert result.code == 0, result.err
    assert "created branch staging from main" in result.out
    assert git(repo, "rev-parse", "staging") == git(repo, "rev-parse", "main")


def test_init_in_a_clone_starts_from_the_team_staging(run: Any, repo: Path,
                                                     tmp_path: Path) -> None:
    git(repo, "branch", "main", "staging~0")
    assert run("new", "bot2", "--name", "Bot 2", repo=repo).code == 0  # staging ahead of main
    server = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(server))
    git(server, "symbolic-ref", "HEAD", "refs/heads/main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    assert git(clone, "branch", "--show-current") == "main"
    result = run("init", repo=clone)
    assert result.code == 0, result.err
    assert "created branch staging from origin/staging" in result.out
    assert "with 4 agents" in result.out
    assert git(clone, "rev-parse", "staging") == git(repo, "rev-parse", "staging")
    assert git(clone, "rev-parse", "--abbrev-ref", "staging@{upstream}") == "origin/staging"


# -- 4. revert conflicts ------------------------------------------------------------------


@pytest.fixture
def hotter(run: Any, repo: Path) -> Path:
    """v1 as sampled (0.2), v2 sets the temperature to 0.4, then staging sets it to 0.9."""
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    assert run("set", AGENT, "model.temperature=0.4", repo=repo).code == 0
    assert run("publish", AGENT, "-m", "second", repo=repo).code == 0
    assert run("set", AGENT, "model.temperature=0.9", "tags=[billing]", repo=repo).code == 0
    return repo


def test_revert_conflict_names_both_values_and_the_snapshot_before(run: Any,
                                                                   hotter: Path) -> None:
    before = tree_state(hotter)
    result = run("revert", AGENT, "v2", "--format", "json", repo=hotter)
    assert result.code == 5
    assert tree_state(hotter) == before
    lines = result.err.splitlines()
    assert lines[0] == (f"error: cannot revert {AGENT}/v2: staging has changed 1 field since "
                        "that publish (nothing was applied):")
    assert lines[1] == "  model.temperature: v2 set 0.4, staging now has 0.9"
    assert lines[-1].startswith("hint: ")
    assert f"agentstage restore {AGENT} {AGENT}/v1" in lines[-1]
    assert f"{AGENT}/v2'" not in lines[-1] and f"restore {AGENT} {AGENT}/v2" not in lines[-1]
    assert result.json()["conflicts"] == [{"path": "model.temperature", "published": 0.4,
                                           "staging": 0.9, "reverted_to": 0.2}]


def test_revert_conflict_on_a_field_removed_since(run: Any, hotter: Path) -> None:
    assert run("set", AGENT, "model.parameters.top_p=0.5", repo=hotter).code == 0
    assert run("publish", AGENT, "-m", "third", repo=hotter).code == 0
    assert run("unset", AGENT, "model.parameters.top_p", repo=hotter).code == 0
    result = run("revert", AGENT, "v3", "--format", "json", repo=hotter)
    assert result.code == 5
    assert "model.parameters.top_p: v3 set 0.5, staging now has nothing (no such field)" \
        in result.err
    assert f"agentstage restore {AGENT} {AGENT}/v2" in result.err
    assert result.json()["conflicts"] == [{"path": "model.parameters.top_p", "published": 0.5,
                                           "staging": None, "staging_absent": True,
                                           "reverted_to": 0.9}]
    text = run("revert", AGENT, "v3", "--preview", repo=hotter)
    assert text.code == 5
    assert "model.parameters.top_p: v3 set 0.5, staging now has (none)" in text.out


def test_revert_conflict_of_the_first_publish_suggests_editing_by_hand(run: Any,
                                                                       hotter: Path) -> None:
    result = run("revert", AGENT, "v1", repo=hotter)
    assert result.code == 5
    assert "model.temperature: v1 set 0.2, staging now has 0.9" in result.err
    hint = result.err.splitlines()[-1]
    assert hint.startswith("hint: ") and "by hand" in hint
    assert "agentstage restore" not in hint


def test_revert_preview_with_conflicts_says_so_and_exits_5(run: Any, hotter: Path) -> None:
    before = tree_state(hotter)
    text = run("revert", AGENT, "v2", "--preview", repo=hotter)
    assert text.code == 5
    assert "no changes" not in text.out
    assert text.out.count("nothing would be applied: the revert conflicts") == 2
    assert "Conflicts: the revert cannot be applied" in text.out
    assert "  model.temperature: v2 set 0.4, staging now has 0.9" in text.out
    assert text.err.startswith(f"error: cannot revert {AGENT}/v2")
    assert f"agentstage restore {AGENT} {AGENT}/v1" in text.err
    as_json = run("revert", AGENT, "v2", "--preview", "--format", "json", repo=hotter)
    assert as_json.code == 5
    preview = as_json.json()  # the preview, printed once, on stdout
    assert preview["tag"] == f"{AGENT}/v2"
    assert preview["conflicts"][0]["path"] == "model.temperature"
    assert preview["conflicts"][0]["staging"] == 0.9
    markdown = run("revert", AGENT, "v2", "--preview", "--format", "markdown", repo=hotter)
    assert markdown.code == 5
    assert "`model.temperature: v2 set 0.4, staging now has 0.9`" in markdown.out
    assert "no changes" not in markdown.out
    assert tree_state(hotter) == before


def test_revert_preview_without_conflicts_still_exits_0(run: Any, hotter: Path) -> None:
    assert run("set", AGENT, "model.temperature=0.4", repo=hotter).code == 0
    result = run("revert", AGENT, "v2", "--preview", repo=hotter)
    assert result.code == 0, result.err
    assert re.search(r"model\.temperature .*0\.4.*0\.2", result.out)
    assert "Conflicts" not in result.out
