"""`agentstage textconv` as git's diff driver: real `git diff` and `git log -p` show fields."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentstage.textconv import convert, guess_section
from conftest import SAMPLE, commit_all, git

AGENT = "billing-support"
AGENT_DIR = Path("agents") / AGENT


def lines(raw: str, name: str | None = None) -> list[str]:
    return convert(raw.encode(), name).decode().splitlines()


@pytest.fixture
def driven(repo: Path) -> Path:
    """The sample repository with the diff driver set up as the README says."""
    (repo / ".gitattributes").write_text("agents/*/*.yaml diff=agentstage\n")
    git(repo, "config", "diff.agentstage.textconv", "agentstage textconv")
    commit_all(repo, "Use the agentstage diff driver")
    return repo


def test_git_diff_shows_the_changed_field(driven: Path) -> None:
    tools = driven / AGENT_DIR / "tools.yaml"
    tools.write_text(tools.read_text().replace("max_results: 5", "max_results: 8"))
    out = git(driven, "diff")
    assert "-tools[web-search].actions[search].config.max_results: 5" in out
    assert "+tools[web-search].actions[search].config.max_results: 8" in out
    plain = git(driven, "diff", "--no-textconv")
    assert "+        max_results: 8" in plain


def test_git_log_p_shows_field_level_history(driven: Path) -> None:
    agent = driven / AGENT_DIR / "agent.yaml"
    agent.write_text(agent.read_text().replace("temperature: 0.2", "temperature: 0.4"))
    commit_all(driven, "Warmer")
    instructions = driven / AGENT_DIR / "instructions.yaml"
    instructions.write_text(instructions.read_text().replace(
        "    ask them to choose before continuing.\n",
        "    ask them to choose before continuing.\n    Never guess an account.\n"))
    commit_all(driven, "Stricter persona")
    log = git(driven, "log", "-p", "-2", "--format=commit %s")
    warmer = log.split("commit Warmer")[1]
    assert "-model.temperature: 0.2\n+model.temperature: 0.4" in warmer
    stricter = log.split("commit Stricter persona")[1].split("commit Warmer")[0]
    assert " instructions[persona].text| ask them to choose before continuing.\n" \
           "+instructions[persona].text| Never guess an account." in stricter


def test_git_diff_of_a_new_agent_and_a_broken_file(driven: Path) -> None:
    (driven / "agents" / "new-bot").mkdir()
    (driven / "agents" / "new-bot" / "agent.yaml").write_text(
        "name: New\nmodel: {name: gpt-4o}\n")
    (driven / AGENT_DIR / "knowledge.yaml").write_text("- id: [unclosed\n")
    git(driven, "add", "-A")
    out = git(driven, "diff", "--cached")
    assert "+name: New\n+model.name: gpt-4o" in out
    # Not YAML: the file is shown as it is, so the diff is the plain one.
    assert "+- id: [unclosed" in out
    assert "-knowledge[billing-faq].type: corpus" in out


def test_cli_textconv_prints_fields(run: Any) -> None:
    result = run("textconv", str(SAMPLE / "agents" / AGENT / "tools.yaml"))
    assert result.code == 0
    assert "tools[web-search].actions[search].config.max_results: 5\n" in result.out
    assert "tools[web-search].config: {}\n" in result.out


def test_cli_textconv_missing_file(run: Any, tmp_path: Path) -> None:
    result = run("textconv", str(tmp_path / "nope.yaml"))
    assert result.code == 6
    assert result.err.startswith("error: cannot read ")


@pytest.mark.parametrize(("text", "section"), [
    ("name: x\n", "settings"),
    ("- id: a\n  text: hi\n", "instructions"),
    ("- id: a\n  type: corpus\n", "knowledge"),
    ("- id: a\n  actions: []\n", "tools"),
    ("- id: a\n  enabled: false\n", "tools"),
    ("- type: pii\n  enabled: true\n", "guardrails"),
    ("- 1\n- 2\n", None),
    ("[]\n", None),
])
def test_section_from_content(text: str, section: str | None) -> None:
    from agentstage.yamlload import parse_yaml

    assert guess_section(parse_yaml(text.encode(), "f").data) == section


def test_section_from_git_temp_name_when_content_cannot_tell() -> None:
    assert lines("[]\n", "/tmp/Xa1b2c_tools.yaml") == ["tools: []"]
    assert lines("[]\n") == ["[]"]


def test_leaves_lists_and_texts() -> None:
    text = """\
- id: persona
  text: |
    Line one.

    Line three.
- id: short
  text: "no final newline\\nsecond"
"""
    assert lines(text) == [
        "instructions[persona].text| Line one.",
        "instructions[persona].text|",
        "instructions[persona].text| Line three.",
        "instructions[short].text| no final newline",
        "instructions[short].text| second",
        "instructions[short].text|\\ no newline at end of text",
    ]


def test_values_that_would_mislead_are_quoted() -> None:
    text = ('name: "0.3"\ndescription: ""\nmodel: {name: "true", parameters: {"a b": null}}\n'
            "tags: [x, ' y']\naccess: team\n")
    assert lines(text) == [
        'name: "0.3"', 'description: ""', 'model.name: "true"', 'model.parameters."a b": null',
        "tags[]: x", 'tags[]: " y"', "access: team",
    ]


def test_free_form_lists_keyed_when_they_can_be() -> None:
    text = """\
- type: topic
  config:
    rules: [{name: a, max: 1}, {name: b, max: 2}]
    matrix: [[1, 2]]
"""
    assert lines(text) == [
        "guardrails[topic].config.rules[a].max: 1",
        "guardrails[topic].config.rules[b].max: 2",
        "guardrails[topic].config.matrix[0][]: 1",
        "guardrails[topic].config.matrix[0][]: 2",
    ]


@pytest.mark.parametrize("raw", [
    b"key: [unclosed\n",
    b"a: &x 1\nb: *x\n",
    b"a: 1\na: 2\n",
    b"\xff\xfe not utf-8",
    b"",
    b"# only a comment\n",
])
def test_not_yaml_we_accept_is_printed_unchanged(raw: bytes, tmp_path: Path) -> None:
    assert convert(raw) == raw
    path = tmp_path / "agent.yaml"
    path.write_bytes(raw)
    done = subprocess.run(["agentstage", "textconv", str(path)], capture_output=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, raw, b"")
