from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstage import model
from agentstage.errors import UsageError
from agentstage.fieldpath import (
    ENTRY_ID_RE,
    LIST_SECTIONS,
    Entry,
    FieldPath,
    Key,
    parse_path,
    render_path,
    section_of,
)

VALID: list[tuple[str, FieldPath]] = [
    ("tags", (Key("tags"),)),
    ("model.temperature", (Key("model"), Key("temperature"))),
    ("model.parameters.top_p", (Key("model"), Key("parameters"), Key("top_p"))),
    ("instructions[persona].text", (Key("instructions"), Entry("persona"), Key("text"))),
    ("guardrails[pii-redaction].enabled",
     (Key("guardrails"), Entry("pii-redaction"), Key("enabled"))),
    ("tools[web-search].actions[search].config.max_results",
     (Key("tools"), Entry("web-search"), Key("actions"), Entry("search"), Key("config"),
      Key("max_results"))),
    ("tools", (Key("tools"),)),
    ("tools[web-search]", (Key("tools"), Entry("web-search"))),
    ("tools[web-search].actions", (Key("tools"), Entry("web-search"), Key("actions"))),
    ("tools[0]", (Key("tools"), Entry("0"))),
    ("knowledge[v1.2:faq_x]", (Key("knowledge"), Entry("v1.2:faq_x"))),
    ("_private-key.x_1", (Key("_private-key"), Key("x_1"))),
    ("model.parameters.tools", (Key("model"), Key("parameters"), Key("tools"))),
]


@pytest.mark.parametrize(("text", "path"), VALID)
def test_parse_valid(text: str, path: FieldPath) -> None:
    assert parse_path(text) == path
    assert render_path(path) == text


FORM = "a field path looks like model.temperature or tools[web-search].actions[search].enabled"

INVALID = [
    ("", f"empty field path; {FORM}"),
    (".model", "at column 1: empty field name"),
    ("model..name", "at column 7: empty field name"),
    ("model.", "at column 7: expected a field name after '.'"),
    ("1model", "at column 1: expected a field name, found '1'"),
    ("model.te mp", "at column 9: unexpected ' ', expected '.', '[' or the end"),
    ("[x]", "at column 1: expected a field name, found '['"),
    ("tools[x", "at column 6: '[' is not closed"),
    ("tools[]", "at column 7: empty id in []"),
    ("tools]x", "at column 6: unexpected ']', expected '.', '[' or the end"),
    ("tools[x]y", "at column 9: unexpected 'y', expected '.', '[' or the end"),
    ("tools[a b]", "at column 7: 'a b' is not a valid id (letters, digits and _ . : -, "
                   "starting with a letter or digit, at most 128 characters)"),
    ("tools[-x]", "at column 7: '-x' is not a valid id"),
    ("tools[" + "a" * 129 + "]", "at column 7: '" + "a" * 129 + "' is not a valid id"),
    ("tools[a][b]", "at column 9: expected '.' after tools[a], found '['"),
    ("tools.web-search", "at column 6: tools is a list: name an entry by its id, tools[ID]"),
    ("tools[x].actions.search",
     "at column 17: tools[x].actions is a list: name an entry by its id, tools[x].actions[ID]"),
    ("model[x]", "at column 6: model is not a list of entries, so [ID] cannot follow"),
    ("tags[billing]", "at column 5: tags is not a list of entries, so [ID] cannot follow"),
    ("model.tools[x]", "at column 12: model.tools is not a list of entries"),
    ("instructions[a].actions[b]",
     "at column 24: instructions[a].actions is not a list of entries"),
    ("tools[x].config[y]", "at column 16: tools[x].config is not a list of entries"),
    ("tools[x].actions[y].actions[z]",
     "at column 28: tools[x].actions[y].actions is not a list of entries"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_path(text)
    error = info.value
    assert error.exit_code == 2
    if text:
        assert error.message.startswith(f"invalid field path {text!r} {message}")
        assert error.message.endswith(f"; {FORM}")
    else:
        assert error.message == message
    assert error.hint == ("list entries are named by id: instructions[ID], knowledge[ID], "
                          "tools[ID], tools[ID].actions[ID], guardrails[TYPE]")


@pytest.mark.parametrize(("text", "section"), [
    ("name", "settings"),
    ("model.temperature", "settings"),
    ("tags", "settings"),
    ("settings.x", "settings"),
    ("instructions", "instructions"),
    ("instructions[persona].text", "instructions"),
    ("knowledge[faq].settings.top_k", "knowledge"),
    ("tools[web-search].actions[search].enabled", "tools"),
    ("guardrails[pii-redaction]", "guardrails"),
])
def test_section_of(text: str, section: str) -> None:
    found = section_of(parse_path(text))
    assert found is model.SECTION_BY_NAME[section]


def test_entry_id_pattern_agrees_with_the_model() -> None:
    assert "^" + ENTRY_ID_RE.pattern + "$" == model.ENTRY_ID_PATTERN
    assert set(LIST_SECTIONS) == {s.name for s in model.SECTIONS if s.is_list}


def test_import_is_light() -> None:
    code = "import sys, agentstage.fieldpath; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,12}", fullmatch=True)
idents = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)


@st.composite
def paths(draw: st.DrawFn) -> str:
    """Valid path texts: a settings path, or a path into a list section."""
    tail = draw(st.lists(keys, max_size=4))
    if draw(st.booleans()):
        first = draw(keys.filter(lambda k: k not in LIST_SECTIONS))
        return ".".join([first, *tail])
    section = draw(st.sampled_from(LIST_SECTIONS))
    if draw(st.booleans()):
        return section
    text = f"{section}[{draw(idents)}]"
    if section == "tools" and draw(st.booleans()):
        text += ".actions"
        if draw(st.booleans()):
            return text
        text += f"[{draw(idents)}]"
    elif tail and tail[0] == "actions" and section == "tools":
        tail = tail[1:]
    return ".".join([text, *tail])


@given(paths())
def test_round_trip(text: str) -> None:
    assert render_path(parse_path(text)) == text


@given(st.text(max_size=30))
def test_anything_parses_or_is_a_usage_error(text: str) -> None:
    try:
        path = parse_path(text)
    except UsageError:
        return
    assert render_path(path) == text


@pytest.mark.parametrize(("text", "path"), [
    ('model.parameters."top.p"', (Key("model"), Key("parameters"), Key("top.p"))),
    ('model.parameters."2fa".x', (Key("model"), Key("parameters"), Key("2fa"), Key("x"))),
    ('tools[crm].config."a b"', (Key("tools"), Entry("crm"), Key("config"), Key("a b"))),
])
def test_quoted_keys_for_free_form_fields(text: str, path: tuple[Key | Entry, ...]) -> None:
    assert parse_path(text) == path
    assert render_path(path) == text


@pytest.mark.parametrize("text", ['model."unclosed', 'model."x"y', '"tools"[x].y'])
def test_bad_quoted_keys(text: str) -> None:
    with pytest.raises(UsageError):
        parse_path(text)
