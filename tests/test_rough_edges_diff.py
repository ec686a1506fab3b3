"""Rough edges a newcomer hit (issue 8, section 4): diff labels and widths, line diffs of
texts, set values read as YAML, positional paths, instruction order, unset leftovers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from agentstage import render
from agentstage.cli import value_width
from agentstage.edit import Edit, apply_edits, parse_assignment
from agentstage.errors import UsageError
from agentstage.fieldpath import parse_path
from agentstage.semdiff import (
    FINAL_NEWLINE_ADDED,
    FINAL_NEWLINE_REMOVED,
    Change,
    diff_configs,
    is_order_change,
    undo_order,
)
from agentstage.yamlload import parse_yaml
from conftest import commit_all, git, tree_state

AGENT = "billing-support"
DIR = Path("agents") / AGENT
LONG = "A description past sixty characters, so a cut would lose its end - THE END"


def staging_file(repo: Path, name: str) -> str:
    return git(repo, "show", f"staging:{DIR}/{name}")


def short(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", "--short=7", rev)


def as_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout (as captured while the test runs) is an 80-column terminal."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")


# -- 1. diff --base/--head names its sides base and head ---------------------------------


def test_diff_base_head_text_labels_the_sides_base_and_head(run: Any, repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    path = repo / DIR / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.4"))
    commit_all(repo, "warmer")
    result = run("diff", "--base", "staging", "--head", "feature", repo=repo)
    assert result.code == 0, result.err
    first = result.out.splitlines()[0]
    assert first == f"{AGENT}: base {short(repo, 'staging')} → head {short(repo, 'feature')}"
    assert "  ~ model.temperature  0.2 → 0.4" in result.out
    # the JSON keeps DESIGN.md's shape: production is the old side, staging the new
    data = run("diff", "--base", "staging", "--head", "feature", "--format", "json",
               repo=repo).json()
    assert set(data[0]) >= {"agent", "has_changes", "production", "staging", "changes"}
    assert data[0]["changes"][0]["production"] == 0.2


def test_diff_text_of_an_agent_absent_from_base() -> None:
    diff = {"agent": "new-bot", "has_changes": True, "production": {"commit": None},
            "staging": {"commit": "b" * 40}, "changes": []}
    assert render.diff_text(diff, False, ("base", "head")).splitlines()[0] \
        == "new-bot: not in base → head bbbbbbb"
    same = {**diff, "has_changes": False}
    assert render.diff_text(same, False, ("base", "head")) == "new-bot: head is identical to base\n"


# -- 2. values whole unless a terminal is too narrow; --full; no "\ No newline" ----------


def test_diff_piped_prints_long_values_whole(run: Any, repo: Path) -> None:
    assert run("set", AGENT, f"description={LONG}", repo=repo).code == 0
    result = run("diff", AGENT, repo=repo)
    assert result.code == 0, result.err
    assert LONG in result.out and "…" not in result.out


def test_diff_on_a_terminal_fits_values_to_its_width_and_full_prints_them_whole(
        run: Any, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_terminal(monkeypatch)
    assert value_width(False) == 80 and value_width(True) is None
    assert run("set", AGENT, f"description={LONG}", repo=repo).code == 0
    cut = run("diff", AGENT, repo=repo)
    line = next(ln for ln in cut.out.splitlines() if "description" in ln)
    assert "…" in line and "THE END" not in line and len(line) <= 80
    full = run("diff", AGENT, "--full", repo=repo)
    assert LONG in full.out and "…" not in full.out


def test_render_cuts_to_the_width_given_and_never_without_one() -> None:
    change = {"section": "settings", "path": "description", "change": "modified",
              "production": "x" * 200, "staging": "y" * 200}
    diff = {"agent": "a", "has_changes": True, "production": {"commit": "a" * 40, "version": 1},
            "staging": {"commit": "b" * 40}, "changes": [change]}
    lines = render.diff_text(diff, False, width=100).splitlines()
    assert max(len(ln) for ln in lines) <= 100
    assert "x" * 200 in render.diff_text(diff, False)
    assert "y" * 200 in render.diff_text(diff, False, width=None)
    preview = {"agent": "a", "tag": "a/v1", "action": "revert", "conflicts": [],
               "staging": diff, "production": diff}
    assert "y" * 200 in render.preview_text(preview, False)
    assert "y" * 200 not in render.preview_text(preview, False, width=100)


def test_a_short_old_value_leaves_the_line_to_the_new_one() -> None:
    added = {"section": "settings", "path": "description", "change": "added",
             "production": None, "staging": "z" * 200}
    diff = {"agent": "a", "has_changes": True, "production": {"commit": "a" * 40, "version": 1},
            "staging": {"commit": "b" * 40}, "changes": [added]}
    line = render.diff_text(diff, False, width=80).splitlines()[-1]
    assert line == "  + description  (none) → " + "z" * 53 + "…"
    assert len(line) == 80


def test_revert_preview_full_prints_values_whole(run: Any, repo: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    as_terminal(monkeypatch)
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    assert run("set", AGENT, f"description={LONG}", repo=repo).code == 0
    assert run("publish", AGENT, "-m", "second", repo=repo).code == 0
    cut = run("revert", AGENT, "v2", "--preview", repo=repo)
    assert cut.code == 0, cut.err
    line = next(ln for ln in cut.out.splitlines() if "~ description" in ln)
    assert "THE END" not in line and "… → (1 line)" in line and len(line) <= 80
    full = run("revert", AGENT, "v2", "--preview", "--full", repo=repo)
    assert full.code == 0, full.err
    line = next(ln for ln in full.out.splitlines() if "~ description" in ln)
    assert line == f"    ~ description  {LONG} → (1 line)"


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("one\ntwo\n", "one\ntwo", [FINAL_NEWLINE_REMOVED]),
    ("one\ntwo", "one\ntwo\n", [FINAL_NEWLINE_ADDED]),
    ("one\ntwo", "one\nthree\n", ["@@ -1,2 +1,2 @@", " one", "-two", "+three",
                                  FINAL_NEWLINE_ADDED]),
    ("one\ntwo", "one\nthree", ["@@ -1,2 +1,2 @@", " one", "-two", "+three"]),
])
def test_text_diff_says_a_final_line_break_in_words(old: str, new: str,
                                                   expected: list[str]) -> None:
    config = _config([{"id": "persona", "text": old}])
    changes = diff_configs(config, _config([{"id": "persona", "text": new}]))
    assert [c.as_json()["text_diff"] for c in changes] == [expected]
    assert not any(line.startswith("\\") for line in expected)


def test_diff_of_a_text_set_from_a_file_without_a_final_newline(run: Any, repo: Path,
                                                                tmp_path: Path) -> None:
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    source = tmp_path / "persona.txt"
    source.write_text("You are the billing assistant.\nBe brief.")
    assert run("set", AGENT, f"instructions[persona].text=@{source}", repo=repo).code == 0
    out = run("diff", AGENT, repo=repo).out
    assert "No newline" not in out
    assert "+Be brief." in out and FINAL_NEWLINE_REMOVED in out


# -- 3. set values: named as the command-line value, with a hint to quote ----------------


@pytest.mark.parametrize(("assignment", "needle", "hint"), [
    ("name=Support: billing", "the value of name reads as a mapping",
     "for text, quote it: \"name='Support: billing'\"; for a mapping, write "
     "\"name={Support: billing}\""),
    ("description=Tier 1 #priority", "would lose '#priority'",
     "\"description='Tier 1 #priority'\""),
    ("tags=- a", "reads as a list", "\"tags=[a]\""),
    ("description=a: b: c", "invalid value for description: invalid YAML",
     "\"description='a: b: c'\""),
    ("name=it's: here", "reads as a mapping", "\"name='it''s: here'\""),
])
def test_set_value_read_as_yaml_gets_a_hint_to_quote(run: Any, repo: Path, assignment: str,
                                                     needle: str, hint: str) -> None:
    before = tree_state(repo)
    result = run("set", AGENT, assignment, repo=repo)
    assert result.code == 2, result.err
    assert result.err.startswith("error: ") and needle in result.err
    assert hint in result.err.split("hint: ")[1]
    assert "value of name:1" not in result.err and ".yaml" not in result.err
    assert tree_state(repo) == before


def test_set_deliberate_mappings_and_quoted_values_are_taken(run: Any, repo: Path) -> None:
    result = run("set", AGENT, "guardrails[x-check]={enabled: true}",
                 "name='Support: billing'", "description=Tier 1 '#priority'",
                 "model.parameters={stop: '#end'}", repo=repo)
    assert result.code == 0, result.err
    shown = run("show", AGENT, "--env", "staging", "--format", "json", repo=repo).json()
    assert shown["name"] == "Support: billing"
    assert shown["description"] == "Tier 1 '#priority'"
    assert shown["model"]["parameters"] == {"stop": "#end"}
    assert any(g["type"] == "x-check" for g in shown["guardrails"])


def test_set_invalid_value_is_named_by_its_path_not_a_file_line(run: Any, repo: Path) -> None:
    before = tree_state(repo)
    result = run("set", AGENT, "name=123", repo=repo)
    assert result.code == 4
    assert result.err.splitlines()[0] == \
        "error: invalid value for name: input should be a valid string (got 123)"
    assert "agent.yaml" not in result.err
    assert "quote it: \"name='123'\"" in result.err
    assert tree_state(repo) == before


def test_set_multiline_value_error_names_the_line_of_the_value() -> None:
    with pytest.raises(UsageError) as info:
        parse_assignment("description=one\n  two: [")
    assert info.value.message.startswith("invalid value for description: invalid YAML")
    assert "of the value" in info.value.message and "value of" not in info.value.message


# -- 4. positions are not ids --------------------------------------------------------------


@pytest.mark.parametrize(("args", "needle", "hint"), [
    (["set", AGENT, "instructions[0].text=Hi"], "no entry of instructions has id '0'",
     "the ids in instructions: persona, refunds-policy, escalation, tone"),
    (["set", AGENT, "tools[0].enabled=false"], "no entry of tools has id '0'",
     "billing-lookup"),
    (["set", AGENT, "tools[web-search].actions[1].enabled=true"],
     "no entry of tools[web-search].actions has id '1'", "the ids in tools[web-search].actions:"
     " search"),
    (["set", AGENT, "guardrails[0].enabled=false"], "entries are named by type", "pii-redaction"),
    (["unset", AGENT, "instructions[0]"], "entries are named by id", "persona"),
])
def test_positional_paths_are_refused(run: Any, repo: Path, args: list[str], needle: str,
                                      hint: str) -> None:
    before = tree_state(repo)
    result = run(*args, repo=repo)
    assert result.code == 2, result.err
    assert needle in result.err and "not by position" in result.err
    assert hint in result.err.split("hint: ")[1]
    assert tree_state(repo) == before


def test_a_numeric_id_that_exists_is_an_id() -> None:
    files = {"instructions.yaml": b"- id: '0'\n  text: a\n"}
    out = apply_edits(files, [Edit(parse_path("instructions[0].text"), "b")])
    assert out["instructions.yaml"] == b"- id: '0'\n  text: b\n"


# -- 5. the order of instructions is a change ------------------------------------------


def _config(instructions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "A", "description": "", "access": "team", "tags": [],
            "model": {"provider": None, "name": "m", "temperature": None, "max_tokens": None,
                      "parameters": {}},
            "instructions": instructions, "knowledge": [], "tools": [], "guardrails": []}


A, B, C = ({"id": i, "text": i.upper()} for i in "abc")


def test_reordered_instructions_are_a_change_first_in_their_section() -> None:
    edited = {**B, "text": "new"}
    changes = diff_configs(_config([A, B, C]), _config([C, A, edited]))
    assert changes == [
        Change("instructions", "instructions", "modified", ["a", "b", "c"], ["c", "a", "b"]),
        Change("instructions", "instructions[b].text", "modified", "B", "new"),
    ]
    assert is_order_change(changes[0]) and not is_order_change(changes[1])
    # an entry added or removed alone moves no other: no order change
    assert diff_configs(_config([A, B]), _config([A, C, B])) == [
        Change("instructions", "instructions[c]", "added", None, C)]
    assert diff_configs(_config([A, B, C]), _config([A, C])) == [
        Change("instructions", "instructions[b]", "removed", B, None)]


def test_reordered_instructions_in_the_cli(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    path = repo / DIR / "instructions.yaml"
    text = path.read_text()
    head, _, tone = text.partition("- id: tone")
    path.write_text("- id: tone" + tone.rstrip("\n") + "\n\n" + head)
    commit_all(repo, "tone first")
    result = run("diff", AGENT, "--exit-code", repo=repo)
    assert result.code == 1, result.err
    assert ("  ~ instructions  [persona, refunds-policy, escalation, tone] → "
            "[tone, persona, refunds-policy, escalation]") in result.out
    data = run("diff", AGENT, "--format", "json", repo=repo).json()
    assert data["changes"] == [{
        "section": "instructions", "path": "instructions", "change": "modified",
        "production": ["persona", "refunds-policy", "escalation", "tone"],
        "staging": ["tone", "persona", "refunds-policy", "escalation"]}]
    assert "**instructions**" not in run("diff", AGENT, "--format", "markdown", repo=repo).out
    assert "`instructions`" in run("diff", AGENT, "--format", "markdown", repo=repo).out


@pytest.mark.parametrize(("now", "expected", "clash"), [
    ([C, A, B], [A, B, C], False),  # as the change left it: back to the old order
    ([A, B, C], None, False),  # already in the old order
    ([B, C, A], None, True),  # reordered since: a clash
    ([C, A, {"id": "d"}, B], [A, B, {"id": "d"}, C], False),  # a new entry keeps its place
    ([C, B], [B, C], False),  # a removed entry: the rest still go back
])
def test_undo_order(now: list[Any], expected: list[Any] | None, clash: bool) -> None:
    change = Change("instructions", "instructions", "modified", ["a", "b", "c"],
                    ["c", "a", "b"])
    assert undo_order(change, _config(now)) == (expected, clash)


def test_undo_order_as_an_edit_reorders_the_file() -> None:
    files = {"instructions.yaml": b"# the prompt\n- id: c\n  text: C\n- id: a\n  text: A\n"}
    change = Change("instructions", "instructions", "modified", ["a", "c"], ["c", "a"])
    entries, clash = undo_order(change, _config([{"id": "c", "text": "C"},
                                                 {"id": "a", "text": "A"}]))
    assert not clash
    out = apply_edits(files, [Edit(parse_path("instructions"), entries)])
    assert out["instructions.yaml"] == b"# the prompt\n- id: a\n  text: A\n- id: c\n  text: C\n"


# -- 6. unset leaves no empty mapping, and no commit when nothing changes -----------------


def test_unset_of_the_last_key_removes_the_emptied_mapping(run: Any, repo: Path) -> None:
    result = run("unset", AGENT, "tools[web-search].actions[search].config.max_results",
                 repo=repo)
    assert result.code == 0, result.err
    tools = staging_file(repo, "tools.yaml")
    assert tools.endswith("    - id: search\n      enabled: false")
    assert "  config: {}\n  actions:" in tools  # the tool's own {} was there before: kept
    result = run("unset", AGENT, "model.parameters.top_p", "model.parameters.presence_penalty",
                 repo=repo)
    assert result.code == 0, result.err
    agent = staging_file(repo, "agent.yaml")
    assert "parameters" not in agent and "  max_tokens: 1024\naccess: team\n" in agent


def test_unset_keeps_a_mapping_that_still_has_keys_and_never_a_top_level_one() -> None:
    files = {"agent.yaml": b"name: a\nmodel:\n  name: m\n  parameters:\n    a: {b: 1}\n    c: 2\n"}
    out = apply_edits(files, [Edit(parse_path("model.parameters.a.b"), remove=True)])
    assert out["agent.yaml"] == b"name: a\nmodel:\n  name: m\n  parameters:\n    c: 2\n"
    out = apply_edits({"agent.yaml": b"name: a\nmodel:\n  name: m\n"},
                      [Edit(parse_path("model.name"), remove=True)])
    assert out["agent.yaml"] == b"name: a\nmodel: {}\n"


@pytest.mark.parametrize("paths", [
    ["model.temprature"], ["tools[nosuch]"], ["tools[web-search].actions[nosuch].enabled"],
    ["knowledge"] , ["model.temprature", "tools[nosuch].config"],
])
def test_unset_of_what_is_not_set_makes_no_commit(run: Any, repo: Path,
                                                  paths: list[str]) -> None:
    if paths == ["knowledge"]:
        assert run("unset", AGENT, "knowledge", repo=repo).code == 0
    before = tree_state(repo)
    result = run("unset", AGENT, *paths, repo=repo)
    assert result.code == 0, result.err
    verb = "is" if len(paths) == 1 else "are"
    assert result.out == f"{AGENT}: no change ({', '.join(paths)} {verb} not set on staging)\n"
    assert tree_state(repo) == before
    assert run("unset", AGENT, *paths, "--format", "json", repo=repo).json() == {
        "agent": AGENT, "commit": None, "changes": []}


def test_a_reordered_list_keeps_each_entry_with_the_comment_above_it(repo: Path) -> None:
    raw = (repo / DIR / "instructions.yaml").read_bytes()
    order = ["tone", "persona", "escalation", "refunds-policy"]
    by_id = {e["id"]: e for e in parse_yaml(raw, "instructions.yaml").data}
    out = apply_edits({"instructions.yaml": raw},
                      [Edit(parse_path("instructions"), [by_id[i] for i in order])])
    text = out["instructions.yaml"].decode()
    assert text.startswith("# System instructions for the billing support assistant, applied"
                           " in order.\n- id: tone\n")
    assert ("business day.\n\n# Source of truth for refunds is the SharePoint policy site; keep"
            " this in sync.\n- id: refunds-policy\n") in text
    assert [e["id"] for e in parse_yaml(out["instructions.yaml"], "x").data] == order


def test_revert_of_a_reorder_puts_the_old_order_back(run: Any, repo: Path) -> None:
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    path = repo / DIR / "instructions.yaml"
    head, _, tone = path.read_text().partition("- id: tone")
    path.write_text("- id: tone" + tone.rstrip("\n") + "\n\n" + head)
    commit_all(repo, "tone first")
    assert run("publish", AGENT, "-m", "tone first", repo=repo).code == 0
    assert run("set", AGENT, "instructions[persona].text=Later edit.", repo=repo).code == 0
    result = run("revert", AGENT, "v2", repo=repo)
    assert result.code == 0, result.err
    shown = run("show", AGENT, "--env", "staging", "--format", "json", repo=repo).json()
    assert [i["id"] for i in shown["instructions"]] == [
        "persona", "refunds-policy", "escalation", "tone"]
    assert shown["instructions"][0]["text"] == "Later edit."  # a later edit survives


def test_unset_of_an_empty_mapping_says_no_field_changed(run: Any, repo: Path) -> None:
    result = run("unset", AGENT, "tools[web-search].config", repo=repo)
    assert result.code == 0, result.err
    assert result.out.startswith(f"{AGENT}: staged a change to the files that changes no field (")
    assert "  config: {}\n  actions:" not in staging_file(repo, "tools.yaml")
