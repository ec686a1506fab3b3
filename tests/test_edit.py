from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstage.config import load_agent
from agentstage.edit import Edit, apply_edits, parse_assignment
from agentstage.errors import AgentstageError, InvalidConfig, NotFound, UsageError
from agentstage.fieldpath import Entry, FieldPath, Key, parse_path, render_path
from agentstage.yamlload import parse_yaml

SAMPLE = Path(__file__).resolve().parent.parent / "sample-repo" / "agents" / "billing-support"


@pytest.fixture(scope="module")
def billing() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(SAMPLE.iterdir())}


def edits(*specs: str) -> list[Edit]:
    """`PATH=VALUE` sets, `-PATH` unsets."""
    return [Edit(parse_path(s[1:]), remove=True) if s.startswith("-") else parse_assignment(s)
            for s in specs]


def text_of(files: dict[str, bytes], name: str) -> str:
    return files[name].decode()


# parse_assignment


@pytest.mark.parametrize(("text", "path", "value"), [
    ("model.temperature=0.3", "model.temperature", 0.3),
    ("model.temperature='0.3'", "model.temperature", "0.3"),
    ("model.max_tokens=1024", "model.max_tokens", 1024),
    ("tags=[a, b]", "tags", ["a", "b"]),
    ("tools[x].enabled=false", "tools[x].enabled", False),
    ("description=no", "description", "no"),
    ("description=yes please", "description", "yes please"),
    ("description=a=b", "description", "a=b"),
    ("model.provider=null", "model.provider", None),
    ("model.parameters={top_p: 0.9, stop: [x]}", "model.parameters", {"top_p": 0.9,
                                                                      "stop": ["x"]}),
    ("description=''", "description", ""),
    ("description=\"line 1\\nline 2\"", "description", "line 1\nline 2"),
    ("name= Bot ", "name", "Bot"),
    ("tools[x]={enabled: true}", "tools[x]", {"enabled": True}),
])
def test_parse_assignment(text: str, path: str, value: Any) -> None:
    edit = parse_assignment(text)
    assert edit == Edit(parse_path(path), value)
    assert type(edit.value) is type(value)


@pytest.mark.parametrize(("text", "error", "message", "hint"), [
    ("model.temperature", UsageError, "expected PATH=VALUE, got 'model.temperature'",
     "write e.g. model.temperature=0.3; to remove a field use unset"),
    ("model.temperature=", UsageError, "no value given for model.temperature",
     "write model.temperature=VALUE (model.temperature=\"''\" for an empty text);"
     " to remove a field use unset"),
    ("name=  ", UsageError, "no value given for name", None),
    ("=3", UsageError, "empty field path; a field path looks like model.temperature or"
     " tools[web-search].actions[search].enabled", None),
    ("model..x=3", UsageError, "invalid field path 'model..x' at column 7: empty field name",
     None),
    ("name=[a", UsageError, "invalid value for name: invalid YAML:", None),
    ("name=#x", UsageError, "invalid value for name: it holds only a comment", None),
    ("name=&a x", UsageError, "invalid value for name: anchor &a is not allowed", None),
    ("name=!!python/none x", UsageError, "invalid value for name: tag", None),
    ("model.temperature=.nan", UsageError, "invalid value for model.temperature: .nan is not"
     " allowed: numbers must be finite", None),
    ("name=@", UsageError, "no file name after '@' in the value of name",
     "write name=@FILE to read the value from FILE"),
])
def test_parse_assignment_errors(text: str, error: type[Exception], message: str,
                                 hint: str | None) -> None:
    with pytest.raises(error) as info:
        parse_assignment(text)
    assert isinstance(info.value, AgentstageError)
    assert info.value.message.startswith(message)
    if hint is not None:
        assert info.value.hint == hint


def test_parse_assignment_reads_a_file(tmp_path: Path) -> None:
    source = tmp_path / "persona.md"
    source.write_bytes(b"\xef\xbb\xbfYou are Bot.\r\nBe brief: always.\r\n")
    edit = parse_assignment(f"instructions[persona].text=@{source}")
    assert edit == Edit(parse_path("instructions[persona].text"),
                        "You are Bot.\nBe brief: always.\n")


def test_parse_assignment_file_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"^no file .*nope\.md \(the value of name\)$"):
        parse_assignment(f"name=@{tmp_path / 'nope.md'}")
    with pytest.raises(UsageError, match=r"^cannot read .* \(the value of name\): "):
        parse_assignment(f"name=@{tmp_path}")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9")
    with pytest.raises(UsageError, match=r"latin\.txt is not UTF-8 text \(the value of name\)"):
        parse_assignment(f"name=@{latin}")


# apply_edits: exact output


AGENT = """\
# The bot.
name: Bot  # shown to users
model:
  provider: openai
  # Keep it low: answers must be consistent.
  temperature: 0.2  # see ADR-7
  name: gpt-4o
  parameters: {}
tags:
  - billing
"""

LIST = """\
# Instructions, in order.
- id: persona
  text: |
    You are Bot.

# About tone: reviewed by legal.
- id: tone
  text: Be kind.

- id: last
  text: Bye.
# end of file
"""

EXACT = [
    pytest.param({"agent.yaml": AGENT}, ["model.temperature=0.5"], "agent.yaml",
                 AGENT.replace("temperature: 0.2", "temperature: 0.5"),
                 id="comments above and beside an edited key stay"),
    pytest.param({"agent.yaml": AGENT}, ["name=Support Bot"], "agent.yaml",
                 AGENT.replace("name: Bot  #", "name: Support Bot #"),
                 id="eol comment stays in its column"),
    pytest.param({"agent.yaml": AGENT}, ["model.parameters.top_p=0.9", "model.max_tokens=512"],
                 "agent.yaml", AGENT.replace("  parameters: {}\n", """\
  parameters:
    top_p: 0.9
  max_tokens: 512
"""), id="keys added at the end of their mapping; an empty {} becomes a block"),
    pytest.param({"agent.yaml": AGENT}, ["-model.temperature"], "agent.yaml",
                 AGENT.replace("  # Keep it low: answers must be consistent.\n"
                               "  temperature: 0.2  # see ADR-7\n", ""),
                 id="unset a key drops the comment above it"),
    pytest.param({"agent.yaml": AGENT}, ["-model.provider"], "agent.yaml",
                 AGENT.replace("  provider: openai\n", ""),
                 id="unset the first key of a mapping keeps the comment after it"),
    pytest.param({"agent.yaml": AGENT}, ["tags=[billing, tier-1]", "access=team"], "agent.yaml",
                 AGENT + "  - tier-1\naccess: team\n", id="a list grows in place"),
    pytest.param({"agent.yaml": AGENT}, ["description=\"One.\\nTwo.\\n\""], "agent.yaml",
                 AGENT + "description: |\n  One.\n  Two.\n",
                 id="multi-line strings are literal blocks"),
    pytest.param({"agent.yaml": AGENT}, ["model.name=no", "model.provider='1.5'",
                                         "access={x: y}"], "agent.yaml",
                 AGENT.replace("gpt-4o", "no").replace("openai", "'1.5'")
                 + "access:\n  x: y\n", id="scalars are plain where YAML allows"),
    pytest.param({"agent.yaml": AGENT}, ["model={name: gpt-5}"], "agent.yaml", """\
# The bot.
name: Bot  # shown to users
model:
  name: gpt-5
tags:
  - billing
""", id="a whole mapping is replaced in place"),
    pytest.param({"instructions.yaml": LIST}, ["-instructions[tone]"], "instructions.yaml", """\
# Instructions, in order.
- id: persona
  text: |
    You are Bot.

- id: last
  text: Bye.
# end of file
""", id="unset an entry drops its own comment, keeps the blank line"),
    pytest.param({"instructions.yaml": LIST}, ["-instructions[last]"], "instructions.yaml", """\
# Instructions, in order.
- id: persona
  text: |
    You are Bot.

# About tone: reviewed by legal.
- id: tone
  text: Be kind.
# end of file
""", id="unset the last entry keeps the end-of-file comment"),
    pytest.param({"instructions.yaml": LIST}, ["-instructions[persona]"], "instructions.yaml",
                 """\
# Instructions, in order.
# About tone: reviewed by legal.
- id: tone
  text: Be kind.

- id: last
  text: Bye.
# end of file
""", id="unset the first entry keeps the header and the next entry's comment"),
    pytest.param({"instructions.yaml": LIST}, ["instructions[new].text=Hi."],
                 "instructions.yaml", LIST.replace("# end of file\n", """\

- id: new
  text: Hi.
# end of file
"""), id="a new entry is appended, spaced like the others"),
    pytest.param({"instructions.yaml": LIST}, ["instructions[tone]={text: Calm.}"],
                 "instructions.yaml", LIST.replace("Be kind.", "Calm."),
                 id="a whole entry set in place"),
    pytest.param({}, ["tools[web-search].actions[search].config.max_results=5",
                      "tools[web-search].enabled=true"], "tools.yaml", """\
- id: web-search
  actions:
    - id: search
      config:
        max_results: 5
  enabled: true
""", id="a missing list file is created as a list"),
    pytest.param({}, ["guardrails[pii-redaction]={enabled: true, type: pii-redaction}"],
                 "guardrails.yaml", "- type: pii-redaction\n  enabled: true\n",
                 id="guardrails are named by type, the key goes first"),
    pytest.param({}, ["name=Bot", "model.name=gpt-4o"], "agent.yaml",
                 "name: Bot\nmodel:\n  name: gpt-4o\n", id="agent.yaml created"),
    pytest.param({"agent.yaml": "name: a\nmodel:\n    name: b\ntags:\n- x\n"},
                 ["model.temperature=1", "tags=[x, y]", "model.parameters.k=v"], "agent.yaml",
                 "name: a\nmodel:\n    name: b\n    temperature: 1\n    parameters:\n"
                 "        k: v\ntags:\n- x\n- y\n", id="the file's own indentation is kept"),
    pytest.param({"tools.yaml": "  - id: a\n    actions:\n        -   id: b\n"},
                 ["tools[a].actions[c].enabled=false"], "tools.yaml",
                 "  - id: a\n    actions:\n        -   id: b\n        -   id: c\n"
                 "            enabled: false\n", id="odd list indentation is kept"),
    pytest.param({"agent.yaml": "---\nname: a\n...\n"}, ["name=b"], "agent.yaml",
                 "---\nname: b\n...\n", id="document markers are kept"),
    pytest.param({"tools.yaml": "# tools\n- id: a\n"}, ["-tools[a]"], "tools.yaml",
                 "# tools\n[]\n", id="the last entry removed leaves an empty list"),
    pytest.param({"tools.yaml": "- id: a\n  actions:\n    - id: b\n\n# c\n- id: z\n"},
                 ["-tools[a].actions[b]"], "tools.yaml",
                 "- id: a\n  actions: []\n\n# c\n- id: z\n",
                 id="an emptied list is written inline, comments after it stay"),
    pytest.param({"tools.yaml": "# only a comment\n"}, ["tools[a].enabled=true"], "tools.yaml",
                 "- id: a\n  enabled: true\n", id="a file of comments only is like no file"),
]


@pytest.mark.parametrize(("files", "specs", "name", "expected"), EXACT)
def test_apply_exact(files: dict[str, str], specs: list[str], name: str,
                     expected: str) -> None:
    before = {k: v.encode() for k, v in files.items()}
    after = apply_edits(before, edits(*specs))
    assert text_of(after, name) == expected
    parse_yaml(after[name], name)


def test_untouched_files_keep_their_bytes(billing: dict[str, bytes]) -> None:
    after = apply_edits(billing, edits("model.temperature=0.3", "tools[web-search].enabled=true"))
    assert set(after) == set(billing)
    for name in ("instructions.yaml", "knowledge.yaml", "guardrails.yaml"):
        assert after[name] is billing[name]
    load_agent("billing-support", after)


@pytest.mark.parametrize("spec", [
    "model.temperature=0.2",
    "guardrails[pii-redaction].config.mask_char='*'",
    "tools[web-search].config={}",
    "tags=[billing, customer-support, tier-1]",
    "knowledge[billing-faq]={type: corpus, id: billing-faq, settings: {top_k: 5, "
    "chunk_size: 800, min_score: 0.35}, description: 'Curated answers to the most common "
    "billing questions, maintained by support ops.'}",
    "description=Answers customer questions about invoices, payments, refunds and plan "
    "pricing, and opens tickets with the billing team when a human is needed.",
])
def test_same_value_keeps_the_bytes(billing: dict[str, bytes], spec: str) -> None:
    assert apply_edits(billing, edits(spec)) == billing


def test_no_edits_no_change(billing: dict[str, bytes]) -> None:
    assert apply_edits(billing, []) == billing


def test_sample_edits(billing: dict[str, bytes]) -> None:
    after = apply_edits(billing, edits(
        "model.temperature=0.3",
        "-instructions[refunds-policy]",
        "tools[web-search].actions[search].config.max_results=10",
        "-tools[ticketing]",
        "guardrails[toxicity].config.threshold=0.8",
        "knowledge[public-pricing].settings.crawl_depth=2",
    ))
    agent = text_of(after, "agent.yaml")
    assert "  # Keep temperature low: billing answers must be consistent and factual.\n" \
           "  temperature: 0.3\n" in agent
    instructions = text_of(after, "instructions.yaml")
    assert "refunds" not in instructions.split("- id: escalation")[0].split("- id: persona")[1]
    assert "ask them to choose before continuing.\n\n- id: escalation\n" in instructions
    tools = text_of(after, "tools.yaml")
    assert "- id: ticketing" not in tools
    assert "        lookback_days: 365\n\n" \
           "# Disabled until legal signs off on answering from external sources.\n" \
           "- id: web-search\n" in tools
    assert tools.endswith("      config:\n        max_results: 10\n")
    config = load_agent("billing-support", after)
    assert config.settings.model.temperature == 0.3
    assert [i.id for i in config.instructions] == ["persona", "escalation", "tone"]
    assert [t.id for t in config.tools] == ["billing-lookup", "web-search"]
    assert config.tools[1].actions[0].config == {"max_results": 10}
    assert config.guardrails[3].config["threshold"] == 0.8
    # nothing else moved: every other line of every file is still there
    for name, data in billing.items():
        old, new = data.decode().splitlines(), after[name].decode().splitlines()
        changed = {ln for ln in old if ln not in new}
        assert len(changed) <= 12, (name, changed)


def test_unset_whole_section_removes_the_file(billing: dict[str, bytes]) -> None:
    after = apply_edits(billing, edits("-tools"))
    assert "tools.yaml" not in after
    assert apply_edits(billing, edits("-tools", "tools[a].enabled=true"))["tools.yaml"] == \
        b"- id: a\n  enabled: true\n"


def test_unset_whole_section_of_an_unreadable_file() -> None:
    assert apply_edits({"tools.yaml": b"- &a x\n", "agent.yaml": b"name: x\n"},
                       edits("-tools")) == {"agent.yaml": b"name: x\n"}


def test_whole_section_set(billing: dict[str, bytes]) -> None:
    after = apply_edits(billing, edits("guardrails=[{type: toxicity, enabled: false}]"))
    assert text_of(after, "guardrails.yaml") == (
        "# Safety and compliance guardrails for the billing assistant.\n"
        "- type: toxicity\n  enabled: false\n")


def test_rename_an_entry(billing: dict[str, bytes]) -> None:
    after = apply_edits(billing, edits("instructions[tone].id=voice"))
    assert "- id: voice\n  text: |\n    Be calm" in text_of(after, "instructions.yaml")


def test_edits_apply_in_order() -> None:
    after = apply_edits({}, edits("name=a", "name=b", "-name", "name=c"))
    assert after == {"agent.yaml": b"name: c\n"}


def test_other_files_pass_through() -> None:
    files = {"agent.yaml": b"name: a\n", "README.md": b"# hi\n"}
    assert apply_edits(files, edits("name=b")) == {"agent.yaml": b"name: b\n",
                                                   "README.md": b"# hi\n"}


def test_python_values_are_written_plainly() -> None:
    value = {"a": [1, 2.5, True, None, "x"], "b": {"c": "multi\nline"}}
    after = apply_edits({}, [Edit(parse_path("model.parameters"), value)])
    assert "!!" not in text_of(after, "agent.yaml") and "&" not in text_of(after, "agent.yaml")
    assert parse_yaml(after["agent.yaml"], "agent.yaml").data == {"model": {"parameters": value}}


# apply_edits: errors

ERRORS = [
    ({"agent.yaml": b"name: Bot\n"}, "name.first=x", UsageError,
     "cannot set name.first: name is a string, not a mapping"),
    ({"agent.yaml": b"name: Bot\n"}, "-name.first", UsageError,
     "cannot unset name.first: name is a string, not a mapping"),
    ({"agent.yaml": b"model: {name: x, temperature: 1}\n"}, "model.temperature.x=1", UsageError,
     "cannot set model.temperature.x: model.temperature is a number, not a mapping"),
    ({"tools.yaml": b"- id: a\n  actions: {b: 1}\n"}, "tools[a].actions[b].enabled=true",
     UsageError, "cannot set tools[a].actions[b].enabled: tools[a].actions is a mapping, not a"
     " list of entries"),
    ({"tools.yaml": b"a: 1\n"}, "tools[a].enabled=true", UsageError,
     "cannot set tools[a].enabled: tools.yaml is a mapping, not a list of entries"),
    ({"tools.yaml": b"a: 1\n"}, "-tools[a]", UsageError,
     "cannot unset tools[a]: tools.yaml is a mapping, not a list of entries"),
    ({"agent.yaml": b"- a\n"}, "name=x", UsageError,
     "cannot set name: agent.yaml is a list, not a mapping of settings"),
    ({}, "tools[a]=5", UsageError, "cannot set tools[a]: an entry is a mapping, not a number"),
    ({}, "tools[a]={id: b}", UsageError, "cannot set tools[a]: the value's id is 'b', not 'a'"),
    ({}, "tools[a].actions[b]={id: c}", UsageError,
     "cannot set tools[a].actions[b]: the value's id is 'c', not 'b'"),
    ({}, "guardrails[a]={type: b}", UsageError,
     "cannot set guardrails[a]: the value's type is 'b', not 'a'"),
    ({}, "tools={a: 1}", UsageError, "cannot set tools: it is a list of entries, not a mapping"),
    ({"tools.yaml": b"- id: x\n"}, "tools[y].id=z", NotFound, "no field tools[y] in this agent"),
    ({"tools.yaml": b"- id: x\n- id: x\n"}, "tools[x].enabled=true", InvalidConfig,
     "tools.yaml: tools[x]: duplicate id 'x': cannot tell which to edit"),
    ({"tools.yaml": b"- id: [x\n"}, "tools[x].enabled=true", InvalidConfig,
     "tools.yaml:2: invalid YAML"),
    ({"agent.yaml": b"name: &a x\n"}, "name=y", InvalidConfig,
     "agent.yaml:1: anchor &a is not allowed"),
]


@pytest.mark.parametrize(("files", "spec", "error", "message"), ERRORS)
def test_apply_errors(files: dict[str, bytes], spec: str, error: type[AgentstageError],
                      message: str) -> None:
    with pytest.raises(error) as info:
        apply_edits(files, edits(spec))
    assert type(info.value) is error
    assert info.value.message.startswith(message)


@pytest.mark.parametrize(("value", "message"), [
    (float("inf"), "cannot set model.temperature: inf is not allowed, numbers must be finite"),
    ({1: "a"}, "cannot set model.temperature: key 1 is not a string"),
    ({"a": [b"x"]}, "cannot set model.temperature.a: a bytes is not a YAML value"),
])
def test_apply_refuses_non_yaml_values(value: Any, message: str) -> None:
    with pytest.raises(UsageError) as info:
        apply_edits({}, [Edit(parse_path("model.temperature"), value)])
    assert info.value.message == message


def test_not_found_exit_code() -> None:
    with pytest.raises(NotFound) as info:
        apply_edits({"tools.yaml": b"- id: x\n"}, edits("tools[y].id=z"))
    assert info.value.exit_code == 6
    assert info.value.message == "no field tools[y] in this agent"


# properties: any edit of the sample agent writes YAML that reads back as the edit says


def _fields(data: Any, path: FieldPath, section: str) -> list[FieldPath]:
    out = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _fields(value, (*path, Key(key)), section)
    elif isinstance(data, list) and path:
        key = "type" if path == (Key("guardrails"),) else "id"
        for entry in data:
            if isinstance(entry, dict) and isinstance(entry.get(key), str):
                out += _fields(entry, (*path, Entry(entry[key])), section)
    return out


def _all_fields() -> list[FieldPath]:
    out: list[FieldPath] = []
    for file in sorted(SAMPLE.iterdir()):
        data = parse_yaml(file.read_bytes(), file.name).data
        prefix: FieldPath = () if file.name == "agent.yaml" else (Key(file.stem),)
        out += _fields(data, prefix, file.stem)
    return [p for p in out if _valid(p)]


def _valid(path: FieldPath) -> bool:
    try:
        return parse_path(render_path(path)) == path
    except UsageError:
        return False


def _get(data: Any, path: FieldPath) -> Any:
    for step in path:
        if isinstance(step, Key):
            data = data[step.name]
        else:
            key = "type" if isinstance(data, list) and any(
                isinstance(e, dict) and "type" in e and "id" not in e for e in data) else "id"
            data = next(e for e in data if e.get(key) == step.ident)
    return data


FIELDS = _all_fields()
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(FIELDS), value=values, remove=st.booleans())
def test_any_edit_reads_back(billing: dict[str, bytes], path: FieldPath, value: Any,
                             remove: bool) -> None:
    if isinstance(path[-1], Entry) and not remove:
        value = value if isinstance(value, dict) else {"enabled": True}
        value.pop("id", None)
        value.pop("type", None)
    if isinstance(path[-1], Key) and path[-1].name in ("id", "type") and len(path) > 1 \
            and isinstance(path[-2], Entry) and not remove:
        value = path[-2].ident
    if len(path) == 1 and path[0].name in ("instructions", "knowledge", "tools", "guardrails") \
            and not remove and not isinstance(value, list):
        value = [value]
    if len(path) == 1 and not remove and isinstance(value, list):
        value = [v for v in value if isinstance(v, dict) and "id" not in v and "type" not in v]
    after = apply_edits(billing, [Edit(path, value, remove)])
    section = "agent.yaml" if path[0].name not in (
        "instructions", "knowledge", "tools", "guardrails") else f"{path[0].name}.yaml"
    for name, data in billing.items():
        if name != section:
            assert after[name] is data
    if remove and len(path) == 1 and section != "agent.yaml":
        assert section not in after
        return
    data = parse_yaml(after[section], section).data
    inner = path if section == "agent.yaml" else path[1:]
    if remove:
        with pytest.raises((KeyError, StopIteration)):
            _get(data, inner)
    else:
        got = _get(data, inner)
        if isinstance(path[-1], Entry):
            assert got == {("type" if path[0].name == "guardrails" and len(path) == 2 else "id"):
                           path[-1].ident, **value}
        else:
            assert got == value


def _restyle(text: str, mapping: int, sequence: int, offset: int) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(yaml.load(text), out)
    return out.getvalue()


SAMPLE_FILES = sorted(SAMPLE.parent.glob("*/*.yaml"))


@pytest.mark.parametrize("style", [None, (4, 2, 0), (4, 6, 4), (3, 3, 1), (2, 2, 0)])
@pytest.mark.parametrize("file", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_one_field_changes_one_line(file: Path, style: tuple[int, int, int] | None) -> None:
    text = file.read_text() if style is None else _restyle(file.read_text(), *style)
    data = parse_yaml(text.encode(), file.name).data
    if file.name == "agent.yaml":
        path: FieldPath = (Key("model"), Key("name"))
        was = data["model"]["name"]
    else:
        key = "type" if file.stem == "guardrails" else "id"
        was = data[0][key]
        path = (Key(file.stem), Entry(was), Key(key))
    after = apply_edits({file.name: text.encode()}, [Edit(path, "renamed")])
    old, new = text.splitlines(), after[file.name].decode().splitlines()
    assert len(old) == len(new)
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert len(changed) == 1
    assert changed[0][1] == changed[0][0].replace(was, "renamed")


@pytest.mark.parametrize(("value", "written"), [
    ("a\x85b\n", '"a\\Nb\\n"'),
    ("x\u2028y", '"x\\Ly"'),
    ("bell\x07\nring", '"bell\\a\\nring"'),
    ("tab\there\nnext", "|-\n  tab\there\n  next"),
    ("  indented\nnext\n", "|2\n    indented\n  next"),
])
def test_awkward_text_is_escaped(value: str, written: str) -> None:
    after = apply_edits({}, [Edit((Key("description"),), value)])
    assert text_of(after, "agent.yaml") == f"description: {written}\n"


def test_folded_text_stays_folded_when_it_can(billing: dict[str, bytes]) -> None:
    after = apply_edits(billing, edits("description=Short now."))
    assert "description: >-\n  Short now.\nmodel:\n" in text_of(after, "agent.yaml")
    after = apply_edits(billing, edits("description=\"Two\\nlines\""))
    assert "description: |-\n  Two\n  lines\nmodel:\n" in text_of(after, "agent.yaml")


names = st.sampled_from(["a", "enabled", "config", "text", "id", "type", "actions", "settings"])


@st.composite
def some_paths(draw: st.DrawFn) -> FieldPath:
    """Paths that exist in the sample agent, one level below them, or in new entries."""
    path: FieldPath = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        path = (*path, Key(draw(names)))
    if draw(st.integers(0, 3)) == 0:
        path = (Key(draw(st.sampled_from(["tools", "instructions", "guardrails"]))),
                Entry(draw(st.sampled_from(["new", "web-search", "persona", "toxicity"]))),
                Key(draw(names)))
    return path if _valid(path) else path[:-1]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.builds(Edit, some_paths(), values, st.booleans()), min_size=1, max_size=4))
def test_edit_sequences_fail_only_with_user_errors(billing: dict[str, bytes],
                                                   batch: list[Edit]) -> None:
    try:
        after = apply_edits(billing, batch)
    except (UsageError, NotFound):
        return
    for name, data in after.items():
        parse_yaml(data, name)


@pytest.mark.parametrize("number", ["1.615366770918863e-123", "1e-5", "2.5E+300", "0.10",
                                    "5e-324", "1.7976931348623157e308"])
def test_an_untouched_float_is_written_back_as_it_was(number: str) -> None:
    """ruamel re-formats floats from their value and lost a digit of 1.615366770918863e-123,
    which made an unrelated `set` an internal error (the mutation audit of issue 10)."""
    text = f"name: Bot\nmodel:\n  name: gpt-4o\n  parameters: {{a: {number}}}\n"
    out = apply_edits({"agent.yaml": text.encode()}, [parse_assignment("tags=[x]")])
    assert f"parameters: {{a: {number}}}" in out["agent.yaml"].decode()
    assert parse_yaml(out["agent.yaml"], "x").data["tags"] == ["x"]
