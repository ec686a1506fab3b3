"""Loading an agent's files: every problem found, each with its file, line and field path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentstage.config import format_path, load_agent, read_agent_dir, validate_section
from agentstage.errors import InvalidConfig, Problem
from agentstage.model import AGENT_FILES, SECTION_BY_FILE, AgentConfig
from agentstage.yamlload import MAX_DEPTH, MAX_FILE_BYTES, parse_yaml
from conftest import SAMPLE

AGENT = "name: Bot\nmodel:\n  name: gpt-4o\n"
D = "agents/bot"
HINT = "fix the files named above, then run the command again"


def problems(files: dict[str, str | bytes], agent: str = "bot") -> list[str]:
    """The problems load_agent reports, as the lines a user reads."""
    raw = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    with pytest.raises(InvalidConfig) as info:
        load_agent(agent, raw)
    assert info.value.exit_code == 4
    assert info.value.hint == HINT
    return [str(p) for p in info.value.problems]


def sample_files(agent: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (SAMPLE / "agents" / agent).iterdir()}


# -- the samples -----------------------------------------------------------------------------

@pytest.mark.parametrize("agent", ["billing-support", "hr-helpdesk", "sales-assistant"])
def test_sample_agents_load(agent: str) -> None:
    config = load_agent(agent, sample_files(agent))
    shown = config.as_dict()
    assert list(shown) == ["name", "description", "model", "access", "tags", "instructions",
                           "knowledge", "tools", "guardrails"]
    assert all(shown[s] for s in ("instructions", "knowledge", "tools", "guardrails"))
    assert "\a" not in repr(shown)


def test_folded_description_reads_as_one_line() -> None:
    config = load_agent("billing-support", sample_files("billing-support"))
    assert config.settings.description == (
        "Answers customer questions about invoices, payments, refunds and plan pricing, and "
        "opens tickets with the billing team when a human is needed."
    )


def test_minimal_agent_takes_the_defaults() -> None:
    config = load_agent("bot", {"agent.yaml": AGENT.encode()})
    assert config.as_dict() == {
        "name": "Bot", "description": "",
        "model": {"provider": None, "name": "gpt-4o", "temperature": None, "max_tokens": None,
                  "parameters": {}},
        "access": "private", "tags": [], "instructions": [], "knowledge": [], "tools": [],
        "guardrails": [],
    }


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("name: no", "name", "no"),
        ("name: off", "name", "off"),
        ("name: 'true'", "name", "true"),
        ("description: yes", "description", "yes"),
        ("description: 2024-01-01", "description", "2024-01-01"),
        ("access: public", "access", "public"),
        ("tags: [no, on, 'null']", "tags", ["no", "on", "null"]),
    ],
)
def test_strings_that_yaml_1_1_would_not_keep(line: str, field: str, value: Any) -> None:
    text = "\n".join(ln for ln in AGENT.splitlines() if not ln.startswith(f"{field}:"))
    config = load_agent("bot", {"agent.yaml": f"{line}\n{text}\n".encode()})
    assert getattr(config.settings, field) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [("temperature: 0", 0.0), ("temperature: 2", 2.0), ("temperature: 0.3", 0.3),
     ("max_tokens: 1", 1), ("max_tokens: 0x400", 1024),
     ("max_tokens: 9223372036854775807", 2**63 - 1)],
)
def test_model_values_at_the_edges(text: str, expected: Any) -> None:
    config = load_agent("bot", {"agent.yaml": f"{AGENT}  {text}\n".encode()})
    key = text.split(":")[0]
    assert getattr(config.settings.model, key) == expected


def test_free_form_parameters_hold_any_plain_value() -> None:
    text = AGENT + "  parameters: {a: [1, {b: null}], c: 'x', d: 0.5, e: false}\n"
    config = load_agent("bot", {"agent.yaml": text.encode()})
    assert config.settings.model.parameters == {"a": [1, {"b": None}], "c": "x", "d": 0.5,
                                                "e": False}


def test_enabled_false_and_true() -> None:
    tools = "- id: t\n  enabled: false\n  actions:\n    - id: a\n      enabled: true\n"
    config = load_agent("bot", {"agent.yaml": AGENT.encode(), "tools.yaml": tools.encode()})
    assert config.tools[0].enabled is False
    assert config.tools[0].actions[0].enabled is True


def test_documentation_files_beside_the_agent_are_allowed() -> None:
    load_agent("bot", {"agent.yaml": AGENT.encode(), "README.md": b"\xff", "notes.txt": b""})


def test_empty_lists_are_allowed() -> None:
    files = {f: b"[]\n" for f in AGENT_FILES[1:]}
    assert load_agent("bot", {"agent.yaml": AGENT.encode(), **files}) == AgentConfig.model_validate(
        {"settings": {"name": "Bot", "model": {"name": "gpt-4o"}}})


# -- bad input, each with the exact problem --------------------------------------------------

A = f"{D}/agent.yaml"
T = f"{D}/tools.yaml"
INSTR = f"{D}/instructions.yaml"
K = f"{D}/knowledge.yaml"
G = f"{D}/guardrails.yaml"

BAD: list[tuple[str, dict[str, str | bytes], list[str]]] = [
    # unknown and misspelt keys
    ("unknown-key", {"agent.yaml": AGENT + "colour: blue\n"},
     [f"{A}:4: colour: unknown field"]),
    ("misspelt-model-key", {"agent.yaml": AGENT + "  temprature: 0.2\n"},
     [f"{A}:4: model.temprature: unknown field (did you mean temperature?)"]),
    ("misspelt-top-key", {"agent.yaml": "name: Bot\ndescrption: x\nmodel: {name: m}\n"},
     [f"{A}:2: descrption: unknown field (did you mean description?)"]),
    ("misspelt-capitalised", {"agent.yaml": "Name: Bot\nname: Bot\nmodel: {name: m}\n"},
     [f"{A}:1: Name: unknown field (did you mean name?)"]),
    ("misspelt-tool-key", {"agent.yaml": AGENT, "tools.yaml": "- id: t\n  enabeld: true\n"},
     [f"{T}:2: tools[t].enabeld: unknown field (did you mean enabled?)"]),
    ("misspelt-action-key",
     {"agent.yaml": AGENT, "tools.yaml": "- id: t\n  actions:\n    - id: a\n      confg: {}\n"},
     [f"{T}:4: tools[t].actions[a].confg: unknown field (did you mean config?)"]),
    ("misspelt-knowledge-key",
     {"agent.yaml": AGENT, "knowledge.yaml": "- id: k\n  type: corpus\n  setings: {}\n"},
     [f"{K}:3: knowledge[k].setings: unknown field (did you mean settings?)"]),
    ("misspelt-guardrail-key",
     {"agent.yaml": AGENT, "guardrails.yaml": "- type: pii\n  confi: {}\n"},
     [f"{G}:1: guardrails[pii].type: unknown guardrail type 'pii' (did you mean pii-redaction?)",
      f"{G}:2: guardrails[pii].confi: unknown field (did you mean config?)"]),
    ("misspelt-instruction-key",
     {"agent.yaml": AGENT, "instructions.yaml": "- id: p\n  text: x\n  txt: y\n"},
     [f"{INSTR}:3: instructions[p].txt: unknown field (did you mean text?)"]),
    ("merge-key", {"agent.yaml": AGENT + "<<: {access: team}\n"},
     [f"{A}:4: <<: unknown field"]),
    # YAML the loader refuses
    ("duplicate-key", {"agent.yaml": AGENT + "name: Other\n"},
     [f"{A}:4: duplicate key 'name' (first at line 1)"]),
    ("anchor-alias", {"agent.yaml": "name: &n Bot\ndescription: *n\nmodel: {name: m}\n"},
     [f"{A}:1: anchor &n is not allowed: write values out in full"]),
    ("python-object", {"agent.yaml": AGENT + "description: !!python/object:os.system x\n"},
     [f"{A}:4: tag tag:yaml.org,2002:python/object:os.system is not allowed: only plain "
      "YAML values are accepted"]),
    ("binary-tag", {"agent.yaml": AGENT + "description: !!binary aGk=\n"},
     [f"{A}:4: tag tag:yaml.org,2002:binary is not allowed: only plain YAML values are "
      "accepted"]),
    ("timestamp-tag", {"agent.yaml": AGENT + "description: !!timestamp 2024-01-01\n"},
     [f"{A}:4: tag tag:yaml.org,2002:timestamp is not allowed: only plain YAML values are "
      "accepted"]),
    ("local-tag", {"agent.yaml": AGENT + "description: !foo x\n"},
     [f"{A}:4: tag !foo is not allowed: only plain YAML values are accepted"]),
    # wrong types
    ("temperature-word", {"agent.yaml": AGENT + "  temperature: hot\n"},
     [f"{A}:4: model.temperature: input should be a valid number (got 'hot')"]),
    ("temperature-quoted-word", {"agent.yaml": AGENT + '  temperature: "hot"\n'},
     [f"{A}:4: model.temperature: input should be a valid number (got 'hot')"]),
    ("temperature-quoted-number", {"agent.yaml": AGENT + "  temperature: '0.3'\n"},
     [f"{A}:4: model.temperature: input should be a valid number (got '0.3')"]),
    ("temperature-bool", {"agent.yaml": AGENT + "  temperature: true\n"},
     [f"{A}:4: model.temperature: input should be a valid number (got True)"]),
    ("max-tokens-float", {"agent.yaml": AGENT + "  max_tokens: 1.5\n"},
     [f"{A}:4: model.max_tokens: input should be a valid integer (got 1.5)"]),
    ("max-tokens-string", {"agent.yaml": AGENT + "  max_tokens: '100'\n"},
     [f"{A}:4: model.max_tokens: input should be a valid integer (got '100')"]),
    ("name-number", {"agent.yaml": "name: 42\nmodel: {name: m}\n"},
     [f"{A}:1: name: input should be a valid string (got 42)"]),
    ("name-null", {"agent.yaml": "name:\nmodel: {name: m}\n"},
     [f"{A}:1: name: input should be a valid string (got None)"]),
    ("model-string", {"agent.yaml": "name: Bot\nmodel: gpt-4o\n"},
     [f"{A}:2: model: input should be a valid dictionary or instance of ModelSettings "
      "(got 'gpt-4o')"]),
    ("tags-string", {"agent.yaml": AGENT + "tags: billing\n"},
     [f"{A}:4: tags: input should be a valid list (got 'billing')"]),
    ("tag-number", {"agent.yaml": AGENT + "tags:\n  - ok\n  - 7\n"},
     [f"{A}:6: tags[1]: input should be a valid string (got 7)"]),
    ("parameters-list", {"agent.yaml": AGENT + "  parameters: [1]\n"},
     [f"{A}:4: model.parameters: input should be a valid dictionary"]),
    ("enabled-no", {"agent.yaml": AGENT, "tools.yaml": "- id: t\n  enabled: no\n"},
     [f"{T}:2: tools[t].enabled: input should be a valid boolean (got 'no')"]),
    ("enabled-yes", {"agent.yaml": AGENT, "tools.yaml": "- id: t\n  enabled: yes\n"},
     [f"{T}:2: tools[t].enabled: input should be a valid boolean (got 'yes')"]),
    ("enabled-quoted-yes", {"agent.yaml": AGENT, "tools.yaml": "- id: t\n  enabled: \"yes\"\n"},
     [f"{T}:2: tools[t].enabled: input should be a valid boolean (got 'yes')"]),
    ("enabled-on-action",
     {"agent.yaml": AGENT, "tools.yaml": "- id: t\n  actions:\n    - id: a\n      enabled: on\n"},
     [f"{T}:4: tools[t].actions[a].enabled: input should be a valid boolean (got 'on')"]),
    ("enabled-one", {"agent.yaml": AGENT, "guardrails.yaml": "- type: pii\n  enabled: 1\n"},
     [f"{G}:1: guardrails[pii].type: unknown guardrail type 'pii' (did you mean pii-redaction?)",
      f"{G}:2: guardrails[pii].enabled: input should be a valid boolean (got 1)"]),
    ("instruction-text-number",
     {"agent.yaml": AGENT, "instructions.yaml": "- id: p\n  text: 3\n"},
     [f"{INSTR}:2: instructions[p].text: input should be a valid string (got 3)"]),
    ("entry-not-mapping", {"agent.yaml": AGENT, "instructions.yaml": "- id: p\n  text: x\n- 5\n"},
     [f"{INSTR}:3: instructions[1]: input should be a valid dictionary or instance of "
      "Instruction (got 5)"]),
    ("entry-id-spaces", {"agent.yaml": AGENT, "instructions.yaml": "- id: a b\n  text: x\n"},
     [f"{INSTR}:1: instructions[a b].id: string should match pattern "
      "'^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' (got 'a b')"]),
    # out of range
    ("temperature-2.5", {"agent.yaml": AGENT + "  temperature: 2.5\n"},
     [f"{A}:4: model.temperature: input should be less than or equal to 2 (got 2.5)"]),
    ("temperature-negative", {"agent.yaml": AGENT + "  temperature: -0.1\n"},
     [f"{A}:4: model.temperature: input should be greater than or equal to 0 (got -0.1)"]),
    ("max-tokens-0", {"agent.yaml": AGENT + "  max_tokens: 0\n"},
     [f"{A}:4: model.max_tokens: input should be greater than 0 (got 0)"]),
    ("max-tokens-negative", {"agent.yaml": AGENT + "  max_tokens: -5\n"},
     [f"{A}:4: model.max_tokens: input should be greater than 0 (got -5)"]),
    ("access-everyone", {"agent.yaml": AGENT + "access: everyone\n"},
     [f"{A}:4: access: input should be 'private', 'team', 'organization' or 'public' "
      "(got 'everyone')"]),
    ("knowledge-type", {"agent.yaml": AGENT, "knowledge.yaml": "- id: k\n  type: web\n"},
     [f"{K}:2: knowledge[k].type: input should be 'corpus', 'sharepoint' or 'website' "
      "(got 'web')"]),
    ("empty-name", {"agent.yaml": "name: ''\nmodel: {name: m}\n"},
     [f"{A}:1: name: string should have at least 1 character (got '')"]),
    ("empty-model-name", {"agent.yaml": "name: Bot\nmodel:\n  name: ''\n"},
     [f"{A}:3: model.name: string should have at least 1 character (got '')"]),
    ("long-tag", {"agent.yaml": AGENT + "tags: [" + "t" * 65 + "]\n"},
     [f"{A}:4: tags[0]: string should have at most 64 characters (got '{'t' * 36}...)"]),
    ("huge-integer", {"agent.yaml": AGENT + "  max_tokens: 99999999999999999999999999999\n"},
     [f"{A}:4: number 99999999999999999999... is too large: integers must fit in 64 bits"]),
    ("inf", {"agent.yaml": AGENT + "  temperature: .inf\n"},
     [f"{A}:4: .inf is not allowed: numbers must be finite"]),
    ("nan", {"agent.yaml": AGENT + "  temperature: .nan\n"},
     [f"{A}:4: .nan is not allowed: numbers must be finite"]),
    ("nan-in-parameters", {"agent.yaml": AGENT + "  parameters: {x: .NaN}\n"},
     [f"{A}:4: .NaN is not allowed: numbers must be finite"]),
    # missing
    ("missing-name", {"agent.yaml": "description: x\nmodel: {name: m}\n"},
     [f"{A}:1: name: required field is missing"]),
    ("missing-model-name", {"agent.yaml": "name: Bot\nmodel:\n  provider: openai\n"},
     [f"{A}:2: model.name: required field is missing"]),
    ("missing-model", {"agent.yaml": "name: Bot\n"},
     [f"{A}:1: model: required field is missing"]),
    ("missing-agent-yaml", {"instructions.yaml": "- id: p\n  text: x\n"},
     [f"{A}: missing: every agent needs agent.yaml"]),
    ("missing-instruction-text", {"agent.yaml": AGENT, "instructions.yaml": "- id: p\n"},
     [f"{INSTR}:1: instructions[p].text: required field is missing"]),
    ("missing-tool-id", {"agent.yaml": AGENT, "tools.yaml": "- enabled: true\n"},
     [f"{T}:1: tools[0].id: required field is missing"]),
    ("missing-guardrail-type", {"agent.yaml": AGENT, "guardrails.yaml": "- enabled: true\n"},
     [f"{G}:1: guardrails[0].type: required field is missing"]),
    # duplicate list ids
    ("duplicate-instruction",
     {"agent.yaml": AGENT,
      "instructions.yaml": "- id: p\n  text: a\n- id: q\n  text: b\n- id: p\n  text: c\n"},
     [f"{INSTR}:5: instructions[p]: duplicate id 'p' (first at line 1)"]),
    ("duplicate-knowledge",
     {"agent.yaml": AGENT,
      "knowledge.yaml": "- id: k\n  type: corpus\n- id: k\n  type: website\n"},
     [f"{K}:3: knowledge[k]: duplicate id 'k' (first at line 1)",
      f"{K}:3: knowledge[k].settings.url: required field is missing"]),
    ("duplicate-tool", {"agent.yaml": AGENT, "tools.yaml": "- id: t\n\n- id: u\n- id: t\n"},
     [f"{T}:4: tools[t]: duplicate id 't' (first at line 1)"]),
    ("duplicate-action",
     {"agent.yaml": AGENT,
      "tools.yaml": "- id: t\n  actions:\n    - id: a\n    - id: b\n    - id: a\n"},
     [f"{T}:5: tools[t].actions[a]: duplicate id 'a' (first at line 3)"]),
    ("same-action-in-two-tools",
     {"agent.yaml": AGENT,
      "tools.yaml": "- id: t\n  actions: [{id: a}]\n- id: u\n  actions: [{id: a}]\n"},
     []),
    ("duplicate-guardrail",
     {"agent.yaml": AGENT, "guardrails.yaml": "- type: pii\n- type: tox\n- type: pii\n"},
     [f"{G}:1: guardrails[pii].type: unknown guardrail type 'pii' (did you mean pii-redaction?)",
      f"{G}:2: guardrails[tox].type: unknown guardrail type 'tox' (did you mean toxicity?)",
      f"{G}:3: guardrails[pii]: duplicate type 'pii' (first at line 1)",
      f"{G}:3: guardrails[pii].type: unknown guardrail type 'pii' (did you mean pii-redaction?)"]),
    # files of the wrong shape
    ("list-file-is-mapping", {"agent.yaml": AGENT, "instructions.yaml": "id: p\ntext: x\n"},
     [f"{INSTR}:1: instructions: must be a list of entries, got a mapping"]),
    ("list-file-is-string", {"agent.yaml": AGENT, "tools.yaml": "web-search\n"},
     [f"{T}:1: tools: must be a list of entries, got a string"]),
    ("agent-yaml-is-list", {"agent.yaml": "- name: Bot\n"},
     [f"{A}:1: must be a mapping of settings, got a list"]),
    ("agent-yaml-is-number", {"agent.yaml": "42\n"},
     [f"{A}:1: must be a mapping of settings, got a int"]),
    ("agent-yaml-is-null", {"agent.yaml": "null\n"},
     [f"{A}:1: must be a mapping of settings, got nothing"]),
    ("empty-file", {"agent.yaml": ""}, [f"{A}: file is empty"]),
    ("comment-only-file", {"agent.yaml": AGENT, "tools.yaml": "# nothing yet\n"},
     [f"{T}: file is empty"]),
    ("binary-file", {"agent.yaml": b"\x00\x01\x02"}, [f"{A}: binary file: not YAML text"]),
    ("invalid-utf8", {"agent.yaml": AGENT.encode() + b"description: \xc3\x28\n"},
     [f"{A}:4: not UTF-8 text (bad byte at offset 45)"]),
    ("oversized", {"agent.yaml": AGENT + "#" * MAX_FILE_BYTES},
     [f"{A}: file is {len(AGENT) + MAX_FILE_BYTES} bytes, over the cap of {MAX_FILE_BYTES}"]),
    ("too-deep", {"agent.yaml": AGENT + "  parameters: " + "{a: " * MAX_DEPTH
                  + "1" + "}" * MAX_DEPTH + "\n"},
     [f"{A}:4: nesting is deeper than {MAX_DEPTH} levels"]),
    ("two-documents", {"agent.yaml": AGENT + "---\n" + AGENT},
     [f"{A}:4: more than one YAML document in the file"]),
    ("bad-indentation", {"agent.yaml": "name: Bot\nmodel:\n  name: m\n   temperature: 1\n"},
     [f"{A}:4: invalid YAML: mapping values are not allowed here"]),
    ("unclosed-bracket", {"agent.yaml": AGENT + "tags: [a, b\naccess: team\n"},
     [f"{A}:5: invalid YAML: expected ',' or ']', but got ':'"]),
    # the files of the directory
    ("unknown-file", {"agent.yaml": AGENT, "tool.yaml": "- id: t\n"},
     [f"{D}/tool.yaml: unknown file (did you mean tools.yaml?)"]),
    ("unknown-file-yml", {"agent.yml": AGENT},
     [f"{A}: missing: every agent needs agent.yaml",
      f"{D}/agent.yml: unknown file (did you mean agent.yaml?)"]),
    ("unknown-file-unlike", {"agent.yaml": AGENT, "zzz.json": "{}"},
     [f"{D}/zzz.json: unknown file (expected agent.yaml, instructions.yaml, knowledge.yaml, "
      "tools.yaml, guardrails.yaml)"]),
]


@pytest.mark.parametrize(("files", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_reported(files: dict[str, str | bytes], expected: list[str]) -> None:
    if not expected:
        load_agent("bot", {k: v.encode() if isinstance(v, str) else v for k, v in files.items()})
        return
    assert problems(files) == expected


UNKNOWN_G = ("unknown guardrail type 'g': expected one of pii-redaction, toxicity, "
             "topic-restriction, jailbreak-detection, prompt-injection, self-harm-detection, or "
             "custom-<name> (or x-<name>) for a type of your own")


def test_every_problem_of_every_file_is_reported_sorted() -> None:
    files = {
        "agent.yaml": "name: ''\nmodel:\n  name: m\n  temprature: 3\n  max_tokens: 0\n"
                      "access: all\n",
        "instructions.yaml": "- id: p\n  text: a\n- id: p\n  txt: b\n",
        "knowledge.yaml": "- id: k\n  type: blog\n",
        "tools.yaml": "- id: t\n  enabled: no\n  actions:\n    - id: a\n    - id: a\n",
        "guardrails.yaml": "- type: g\n- type: g\n",
        "tool.yaml": "x: 1\n",
    }
    assert problems(files) == [
        f"{A}:1: name: string should have at least 1 character (got '')",
        f"{A}:4: model.temprature: unknown field (did you mean temperature?)",
        f"{A}:5: model.max_tokens: input should be greater than 0 (got 0)",
        f"{A}:6: access: input should be 'private', 'team', 'organization' or 'public' "
        "(got 'all')",
        f"{G}:1: guardrails[g].type: {UNKNOWN_G}",
        f"{G}:2: guardrails[g]: duplicate type 'g' (first at line 1)",
        f"{G}:2: guardrails[g].type: {UNKNOWN_G}",
        f"{INSTR}:3: instructions[p]: duplicate id 'p' (first at line 1)",
        f"{INSTR}:3: instructions[p].text: required field is missing",
        f"{INSTR}:4: instructions[p].txt: unknown field (did you mean text?)",
        f"{K}:2: knowledge[k].type: input should be 'corpus', 'sharepoint' or 'website' "
        "(got 'blog')",
        f"{D}/tool.yaml: unknown file (did you mean tools.yaml?)",
        f"{T}:2: tools[t].enabled: input should be a valid boolean (got 'no')",
        f"{T}:5: tools[t].actions[a]: duplicate id 'a' (first at line 4)",
    ]


def test_a_broken_file_does_not_hide_the_others() -> None:
    files = {"agent.yaml": "name: [\n", "tools.yaml": "- id: t\n  enabled: no\n"}
    assert problems(files) == [
        f"{A}:2: invalid YAML: expected the node content, but found '<stream end>'",
        f"{T}:2: tools[t].enabled: input should be a valid boolean (got 'no')",
    ]


def test_directory_name_that_is_not_an_agent_id() -> None:
    assert problems({"agent.yaml": AGENT}, agent="Bad_Name") == [
        "agents/Bad_Name: directory name 'Bad_Name' is not a valid agent id: an agent id is "
        "lowercase letters, digits and '-', starting with a letter or digit, at most 63 "
        "characters (rename it, e.g. to 'bad-name')",
    ]


def test_where_names_the_directory_in_messages() -> None:
    with pytest.raises(InvalidConfig) as info:
        load_agent("bot", {"agent.yaml": b"name: Bot\n"}, "staging:agents/bot")
    assert [str(p) for p in info.value.problems] == [
        "staging:agents/bot/agent.yaml:1: model: required field is missing"]


def test_one_problem_is_the_message_and_several_are_listed() -> None:
    with pytest.raises(InvalidConfig) as one:
        load_agent("bot", {"agent.yaml": b"name: Bot\n"})
    assert one.value.message == f"{A}:1: model: required field is missing"
    with pytest.raises(InvalidConfig) as two:
        load_agent("bot", {"agent.yaml": b"name: ''\n"})
    assert two.value.message == (
        "2 problems:\n"
        f"  {A}:1: name: string should have at least 1 character (got '')\n"
        f"  {A}:1: model: required field is missing"
    )


# -- validate_section and format_path --------------------------------------------------------

def test_validate_section_returns_the_value_or_the_problems() -> None:
    section = SECTION_BY_FILE["tools.yaml"]
    good = parse_yaml(b"- id: t\n  actions: [{id: a}]\n", "t.yaml")
    value, found = validate_section(good, section)
    assert found == []
    assert [t.id for t in value] == ["t"]
    bad = parse_yaml(b"- id: t\n  enabled: no\n", "t.yaml")
    assert validate_section(bad, section) == (None, [
        Problem("t.yaml", 2, "tools[t].enabled", "input should be a valid boolean (got 'no')")])


@pytest.mark.parametrize(
    ("file", "data", "loc", "expected"),
    [
        ("agent.yaml", {"model": {}}, ("model", "temperature"), "model.temperature"),
        ("agent.yaml", {"tags": ["a"]}, ("tags", 0), "tags[0]"),
        ("tools.yaml", [{"id": "web", "actions": [{"id": "s"}]}], (0, "actions", 0, "config"),
         "tools[web].actions[s].config"),
        ("tools.yaml", [{"id": "web", "actions": [{}]}], (0, "actions", 0),
         "tools[web].actions[0]"),
        ("tools.yaml", [{"enabled": True}], (0, "id"), "tools[0].id"),
        ("guardrails.yaml", [{"type": "pii"}], (0, "enabled"), "guardrails[pii].enabled"),
        ("instructions.yaml", [{"id": 5}], (0, "id"), "instructions[0].id"),
        ("knowledge.yaml", [{"id": "k", "settings": {"x": [1]}}], (0, "settings", "x", 0),
         "knowledge[k].settings.x[0]"),
    ],
)
def test_format_path_names_entries_by_id(file: str, data: Any, loc: tuple[str | int, ...],
                                         expected: str) -> None:
    assert format_path(SECTION_BY_FILE[file], data, loc) == expected


# -- reading a directory on disk -------------------------------------------------------------

def test_read_agent_dir_reads_the_files(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(AGENT)
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / ".hidden").write_text("skipped")
    assert read_agent_dir(tmp_path) == {"agent.yaml": AGENT.encode(), "README.md": b"hi",
                                        ".hidden": b"skipped"}


def _disk_problems(path: Path, where: str | None = None) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        read_agent_dir(path, where)
    return [str(p) for p in info.value.problems]


def test_read_agent_dir_refuses_links_directories_and_odd_files(tmp_path: Path) -> None:
    d = tmp_path / "bot"
    d.mkdir()
    (d / "agent.yaml").write_text(AGENT)
    (d / "tools.yaml").symlink_to(d / "agent.yaml")
    (d / "outside.yaml").symlink_to("/etc/passwd")
    (d / "sub").mkdir()
    os.mkfifo(d / "pipe")
    (d / "big.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    assert _disk_problems(d, "agents/bot") == [
        f"agents/bot/big.yaml: file is {MAX_FILE_BYTES + 1} bytes, over the cap of "
        f"{MAX_FILE_BYTES}",
        "agents/bot/outside.yaml: symbolic links are not allowed in an agent",
        "agents/bot/pipe: not a regular file",
        "agents/bot/sub: subdirectories are not allowed in an agent",
        "agents/bot/tools.yaml: symbolic links are not allowed in an agent",
    ]


def test_read_agent_dir_refuses_a_linked_agent_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "agent.yaml").write_text(AGENT)
    (tmp_path / "bot").symlink_to(real)
    assert _disk_problems(tmp_path / "bot") == [
        f"{tmp_path}/bot: an agent directory must not be a symbolic link"]
