"""Strict YAML 1.2 loading: what resolves to what, what is refused, and where."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstage.errors import InvalidConfig, Problem
from agentstage.yamlload import MAX_DEPTH, MAX_FILE_BYTES, Document, parse_yaml

FILE = "agents/x/agent.yaml"

BOMB = b"""\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def refusal(data: bytes) -> Problem:
    with pytest.raises(InvalidConfig) as info:
        parse_yaml(data, FILE)
    assert len(info.value.problems) == 1
    return info.value.problems[0]


def nest(depth: int) -> bytes:
    """A document whose root is *depth* nested containers."""
    return b"a: " + b"[" * (depth - 1) + b"]" * (depth - 1) + b"\n"


# -- YAML 1.2 core schema --------------------------------------------------------------------

SCALARS: list[tuple[str, Any]] = [
    ("0.3", 0.3),
    ("'0.3'", "0.3"),
    ('"0.3"', "0.3"),
    ("0o17", 15),
    ("0x1F", 31),
    ("0x1f", 31),
    ("1e3", 1000.0),
    ("1E3", 1000.0),
    ("1.5e+3", 1500.0),
    ("1e-3", 0.001),
    (".5", 0.5),
    ("+.5", 0.5),
    ("1.", 1.0),
    ("-1", -1),
    ("+1", 1),
    ("010", 10),  # YAML 1.2: decimal, not octal
    ("0", 0),
    ("null", None),
    ("Null", None),
    ("NULL", None),
    ("~", None),
    ("", None),
    ("True", True),
    ("true", True),
    ("TRUE", True),
    ("false", False),
    ("False", False),
    ("yes", "yes"),
    ("no", "no"),
    ("on", "on"),
    ("off", "off"),
    ("y", "y"),
    ("n", "n"),
    ("tRUE", "tRUE"),
    ("nULL", "nULL"),
    ("2024-01-01", "2024-01-01"),
    ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
    ("12:30", "12:30"),  # YAML 1.1 sexagesimal; a string in 1.2
    ("0b101", "0b101"),
    ("0X1F", "0X1F"),
    ("1_000", "1_000"),
    ("0o8", "0o8"),
    ("-0x1", "-0x1"),
    ("'yes'", "yes"),
    ("'true'", "true"),
    ("'null'", "null"),
    ("''", ""),
    ("!!str 1", "1"),
    ("!!str true", "true"),
    ("!!int 5", 5),
    ("!!float 1", 1.0),
    ("!!bool false", False),
    ("!!null ''", None),
    ("! 12", "12"),  # the non-specific tag: a string
    ("!<tag:yaml.org,2002:str> 7", "7"),
    ("9223372036854775807", 2**63 - 1),
    ("-9223372036854775808", -(2**63)),
    ('"tab\\there"', "tab\there"),
    ("a b c", "a b c"),
]


@pytest.mark.parametrize(("text", "expected"), SCALARS, ids=[s for s, _ in SCALARS])
def test_scalars_resolve_by_yaml_1_2(text: str, expected: Any) -> None:
    doc = parse_yaml(f"value: {text}\n".encode(), FILE)
    value = doc.data["value"]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"d: >-\n  a\n  b\n\n  c\n", "a b\nc"),
        (b"d: >\n  x\n  y\n", "x y\n"),
        (b"d: |\n  x\n  y\n", "x\ny\n"),
        (b"d: |-\n  x\n\n  y\n", "x\n\ny"),
        (b"d: >-\n  one\n    indented\n  two\n", "one\n  indented\ntwo"),
        (b'd: "a\\ab"\n', "a\x07b"),  # an escaped BEL in quotes is the user's
    ],
    ids=["folded-strip", "folded-clip", "literal", "literal-strip", "folded-more-indented",
         "quoted-escape"],
)
def test_block_scalars(text: bytes, expected: str) -> None:
    # The round-trip scanner marks folds with BEL; none may reach the value.
    assert parse_yaml(text, FILE).data["d"] == expected


def test_byte_order_mark_is_ignored() -> None:
    assert parse_yaml(b"\xef\xbb\xbfa: 1\n", FILE).data == {"a": 1}


def test_a_plain_document_loads_as_plain_python() -> None:
    doc = parse_yaml(b"name: Bot\nmodel: {name: gpt, temperature: 0.2}\ntags: [a, b]\n", FILE)
    assert doc == Document(FILE, {"name": "Bot", "model": {"name": "gpt", "temperature": 0.2},
                                  "tags": ["a", "b"]}, doc.lines)
    assert type(doc.data) is dict
    assert type(doc.data["tags"]) is list


def test_a_merge_key_is_only_a_key() -> None:
    # No YAML 1.1 merge: `<<` is an ordinary key, left for the schema to refuse.
    assert parse_yaml(b"a: {x: 1}\n<<: {y: 2}\n", FILE).data == {"a": {"x": 1}, "<<": {"y": 2}}


# -- refusals --------------------------------------------------------------------------------

REFUSALS: list[tuple[str, bytes, int | None, str]] = [
    ("duplicate-key", b"name: a\nmodel: {}\nname: b\n", 3,
     "duplicate key 'name' (first at line 1)"),
    ("duplicate-nested-key", b"model:\n  name: a\n  temp: 1\n  name: b\n", 4,
     "duplicate key 'name' (first at line 2)"),
    ("duplicate-flow-key", b"m: {a: 1, a: 2}\n", 1, "duplicate key 'a' (first at line 1)"),
    ("anchor", b"a: &x 1\n", 1, "anchor &x is not allowed: write values out in full"),
    ("anchor-on-map", b"a: 1\nb: &m\n  c: 1\n", 2,
     "anchor &m is not allowed: write values out in full"),
    ("alias", b"a: [1]\nb: *x\n", 2, "alias *x is not allowed: write the value out"),
    ("alias-bomb", BOMB, 1, "anchor &a is not allowed: write values out in full"),
    ("python-object", b"a: !!python/object:os.system 'x'\n", 1,
     "tag tag:yaml.org,2002:python/object:os.system is not allowed: only plain YAML values "
     "are accepted"),
    ("python-apply", b"x: 1\na: !!python/object/apply:os.system ['ls']\n", 2,
     "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed: only plain YAML "
     "values are accepted"),
    ("python-name", b"a: !!python/name:os.system ''\n", 1,
     "tag tag:yaml.org,2002:python/name:os.system is not allowed: only plain YAML values "
     "are accepted"),
    ("binary", b"a: !!binary aGVsbG8=\n", 1,
     "tag tag:yaml.org,2002:binary is not allowed: only plain YAML values are accepted"),
    ("timestamp", b"a: !!timestamp 2024-01-01\n", 1,
     "tag tag:yaml.org,2002:timestamp is not allowed: only plain YAML values are accepted"),
    ("set", b"a: !!set {x, y}\n", 1,
     "tag tag:yaml.org,2002:set is not allowed: only plain YAML values are accepted"),
    ("omap", b"a: !!omap [x: 1]\n", 1,
     "tag tag:yaml.org,2002:omap is not allowed: only plain YAML values are accepted"),
    ("local-tag", b"a: !foo bar\n", 1,
     "tag !foo is not allowed: only plain YAML values are accepted"),
    ("local-tag-on-map", b"a: 1\nb: !foo {x: 1}\n", 2,
     "tag !foo is not allowed: only plain YAML values are accepted"),
    ("tag-directive", b"%TAG !e! tag:example.com,2000:\n---\na: !e!foo 1\n", 3,
     "tag tag:example.com,2000:foo is not allowed: only plain YAML values are accepted"),
    ("str-tag-on-map", b"a: !!str {x: 1}\n", 1,
     "tag tag:yaml.org,2002:str is not allowed: only plain YAML values are accepted"),
    ("map-tag-on-scalar", b"a: !!map x\n", 1, "tag !!map cannot be used on a scalar"),
    ("int-tag-on-word", b"a: !!int five\n", 1, "'five' is not a valid !!int"),
    ("bool-tag-on-yes", b"a: !!bool yes\n", 1, "'yes' is not a valid !!bool"),
    ("bad-indentation", b"name: x\nmodel:\n  name: y\n   temperature: 1\n", 4,
     "invalid YAML: mapping values are not allowed here"),
    ("unclosed-bracket", b"name: x\ntags: [a, b\nmodel: 1\n", 3,
     "invalid YAML: expected ',' or ']', but got ':'"),
    ("unclosed-brace", b"a: 1\nb: 2\nc: {x: 1\n", 4,
     "invalid YAML: expected ',' or '}', but got '<stream end>'"),
    ("unclosed-quote", b"a: 1\nb: \"open\n", 3,
     "invalid YAML: found unexpected end of stream"),
    ("tab-indent", b"a:\n\tb: 1\n", 2,
     "invalid YAML: found character '\\t' that cannot start any token"),
    ("sequence-in-mapping", b"a: 1\n- b\n", 2,
     "invalid YAML: expected <block end>, but found '-'"),
    ("control-character", b"a: 1\nb: x\x07y\n", 2,
     "invalid YAML: control character U+0007 is not allowed (escape it in quotes)"),
    ("empty", b"", None, "file is empty"),
    ("whitespace-only", b"  \n\n\t\n", None, "file is empty"),
    ("comment-only", b"# just a comment\n\n   # another\n", None, "file is empty"),
    ("nul-byte", b"name: x\x00\n", None, "binary file: not YAML text"),
    ("invalid-utf8", b"a: 1\nb: 2\nc: \xff\xfe\n", 3,
     "not UTF-8 text (bad byte at offset 13)"),
    ("latin-1", b"name: caf\xe9\n", 1, "not UTF-8 text (bad byte at offset 9)"),
    ("utf-16", "name: x\n".encode("utf-16"), None, "binary file: not YAML text"),
    ("too-deep", nest(MAX_DEPTH + 1), 1, f"nesting is deeper than {MAX_DEPTH} levels"),
    ("two-documents", b"a: 1\n---\nb: 2\n", 2, "more than one YAML document in the file"),
    ("two-explicit-documents", b"---\na: 1\n...\n---\nb: 2\n", 4,
     "more than one YAML document in the file"),
    ("huge-integer", b"a: " + b"9" * 5000 + b"\n", 1,
     "number 99999999999999999999... is too large: integers must fit in 64 bits"),
    ("integer-over-64-bits", b"a: 9223372036854775808\n", 1,
     "number 9223372036854775808 is too large: integers must fit in 64 bits"),
    ("negative-over-64-bits", b"a: -9223372036854775809\n", 1,
     "number -9223372036854775809 is too large: integers must fit in 64 bits"),
    ("huge-hex", b"a: 0x" + b"f" * 20000 + b"\n", 1,
     "number 0xffffffffffffffffff... is too large: integers must fit in 64 bits"),
    ("huge-octal", b"a: 0o" + b"7" * 30 + b"\n", 1,
     "number 0o777777777777777777... is too large: integers must fit in 64 bits"),
    ("float-overflow", b"a: 1e999\n", 1, "number 1e999 is out of range"),
    ("inf", b"a: .inf\n", 1, ".inf is not allowed: numbers must be finite"),
    ("minus-inf", b"a: -.Inf\n", 1, "-.Inf is not allowed: numbers must be finite"),
    ("nan", b"a: .nan\n", 1, ".nan is not allowed: numbers must be finite"),
    ("nan-upper", b"a: [1, .NaN]\n", 1, ".NaN is not allowed: numbers must be finite"),
    ("int-key", b"name: x\n1: a\n", 2, "key 1 must be a string (quote it)"),
    ("bool-key", b"true: a\n", 1, "key True must be a string (quote it)"),
    ("null-key", b"~: a\n", 1, "key None must be a string (quote it)"),
    ("complex-key", b"a: 1\n? [a]\n: 1\n", 2, "a mapping or list cannot be a key"),
]


@pytest.mark.parametrize(("data", "line", "message"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refused(data: bytes, line: int | None, message: str) -> None:
    problem = refusal(data)
    assert problem == Problem(FILE, line, "", message)


def test_refusal_as_one_line_with_file_and_line() -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_yaml(b"a: 1\na: 2\n", FILE)
    assert info.value.message == f"{FILE}:2: duplicate key 'a' (first at line 1)"
    assert info.value.exit_code == 4


def test_alias_bomb_is_refused_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidConfig):
        parse_yaml(BOMB, FILE)
    assert time.perf_counter() - start < 0.5


def test_alias_bomb_with_the_anchor_far_away_is_refused_fast() -> None:
    # The first anchor is on the last line: refusal must not wait for anything but it.
    body = b"".join(b"k%d: v\n" % n for n in range(300))
    start = time.perf_counter()
    problem = refusal(body + BOMB)
    assert time.perf_counter() - start < 0.5
    assert problem.line == 301


def test_file_at_the_size_cap_is_read() -> None:
    head = b"a: "
    data = head + b"x" * (MAX_FILE_BYTES - len(head) - 1) + b"\n"
    assert len(data) == MAX_FILE_BYTES
    assert len(parse_yaml(data, FILE).data["a"]) == MAX_FILE_BYTES - len(head) - 1


def test_file_over_the_size_cap_is_refused_before_parsing() -> None:
    data = b"a: [" + b"1, " * (MAX_FILE_BYTES // 3) + b"]\n"
    start = time.perf_counter()
    problem = refusal(data)
    assert time.perf_counter() - start < 0.5
    assert problem == Problem(FILE, None, "",
                              f"file is {len(data)} bytes, over the cap of {MAX_FILE_BYTES}")


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@pytest.mark.parametrize("depth", [2, 3, MAX_DEPTH - 1, MAX_DEPTH])
def test_nesting_up_to_max_depth_is_read(depth: int) -> None:
    assert depth_of(parse_yaml(nest(depth), FILE).data) == depth


def test_deep_nesting_in_block_style_names_the_line() -> None:
    text = "".join("  " * n + f"k{n}:\n" for n in range(MAX_DEPTH)) + "  " * MAX_DEPTH + "x: 1\n"
    problem = refusal(text.encode())
    assert problem == Problem(FILE, MAX_DEPTH + 1, "",
                              f"nesting is deeper than {MAX_DEPTH} levels")


def test_very_deep_nesting_is_refused_in_bounded_time() -> None:
    # ruamel's scanner looks up to 1024 characters ahead for a simple key, at a cost that
    # grows with the open flow levels: about half a second here, however long the line.
    start = time.perf_counter()
    problem = refusal(b"[" * 100_000 + b"]" * 100_000)
    assert time.perf_counter() - start < 2.0
    assert problem.message == f"nesting is deeper than {MAX_DEPTH} levels"


# -- lines -----------------------------------------------------------------------------------

LINES_DOC = b"""\
# a comment
name: Bot   # trailing comment

model:
  name: gpt
  parameters: {a: 1,
    b: [1,
        2]}
tags:
- a
-   b
text: |
  l1

  l3
after: x
list:
  - id: p
    text: >
      folded
      text
  -
    id: q
  - [deep, "er"]
last: 'quoted
  over lines'
"""


def test_every_line_is_recorded() -> None:
    doc = parse_yaml(LINES_DOC, FILE)
    assert doc.lines == {
        (): 2,
        ("name",): 2,
        ("model",): 4,
        ("model", "name"): 5,
        ("model", "parameters"): 6,
        ("model", "parameters", "a"): 6,
        ("model", "parameters", "b"): 7,
        ("model", "parameters", "b", 0): 7,
        ("model", "parameters", "b", 1): 8,
        ("tags",): 9,
        ("tags", 0): 10,
        ("tags", 1): 11,
        ("text",): 12,
        ("after",): 16,
        ("list",): 17,
        ("list", 0): 18,
        ("list", 0, "id"): 18,
        ("list", 0, "text"): 19,
        ("list", 1): 23,
        ("list", 1, "id"): 23,
        ("list", 2): 24,
        ("list", 2, 0): 24,
        ("list", 2, 1): 24,
        ("last",): 25,
    }
    assert doc.data["text"] == "l1\n\nl3\n"
    assert doc.data["list"][0]["text"] == "folded text\n"
    assert doc.data["last"] == "quoted over lines"


def test_recorded_lines_point_at_the_text() -> None:
    # Every recorded key's line holds that key; every list item's line holds its value.
    text = LINES_DOC.decode().splitlines()
    doc = parse_yaml(LINES_DOC, FILE)
    for pos, line in doc.lines.items():
        if pos and isinstance(pos[-1], str):
            assert f"{pos[-1]}:" in text[line - 1], (pos, line)


@pytest.mark.parametrize(
    ("pos", "line"),
    [(("model", "name"), 5), (("model", "nosuch"), 4), (("model", "nosuch", 3, "x"), 4),
     (("list", 0, "missing"), 18), (("nosuch",), 2), ((), 2)],
)
def test_line_of_falls_back_to_the_nearest_ancestor(pos: tuple[str | int, ...],
                                                    line: int) -> None:
    assert parse_yaml(LINES_DOC, FILE).line_of(pos) == line


def test_lines_after_a_windows_line_end_are_right() -> None:
    doc = parse_yaml(b"a: 1\r\nb: 2\r\nc:\r\n  - x\r\n", FILE)
    assert doc.lines == {(): 1, ("a",): 1, ("b",): 2, ("c",): 3, ("c", 0): 4}


def test_lines_of_a_root_list() -> None:
    doc = parse_yaml(b"# head\n- id: a\n  text: x\n\n- id: b\n  text: |\n    y\n", FILE)
    assert doc.data == [{"id": "a", "text": "x"}, {"id": "b", "text": "y\n"}]
    assert doc.lines == {(): 2, (0,): 2, (0, "id"): 2, (0, "text"): 3, (1,): 5,
                         (1, "id"): 5, (1, "text"): 6}


# -- anything at all -------------------------------------------------------------------------

YAML_TOKENS = [*"ab01.:-[]{}&*!|>'\"#%?~,\n\t @`\\", "\x00", "\x07", "é", "\ufeff", "---",
               "...", "- ", ": ", "\n  ", "!!", "!!python/object ", "&a ", "*a", "<<: ",
               "%YAML 1.2\n", "0x", "0o", ".inf", "1e", "null", "true", "yes", "'", "|-\n"]
YAMLISH = st.lists(st.sampled_from(YAML_TOKENS), max_size=80).map("".join)


def _parses_or_refuses(data: bytes) -> None:
    start = time.perf_counter()
    try:
        doc = parse_yaml(data, FILE)
    except InvalidConfig as exc:
        assert exc.problems
        assert all(p.file == FILE for p in exc.problems)
        assert "Traceback" not in exc.message
    else:
        assert isinstance(doc, Document)
        assert all(isinstance(line, int) and line >= 1 for line in doc.lines.values())
    assert time.perf_counter() - start < 1.0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(data: bytes) -> None:
    _parses_or_refuses(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused(text: str) -> None:
    _parses_or_refuses(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=200, deadline=None)
@given(YAMLISH)
def test_yaml_like_text_parses_or_is_refused(text: str) -> None:
    _parses_or_refuses(text.encode())


def test_the_fast_parser_is_used_and_agrees_with_the_pure_one() -> None:
    """libyaml's C parser reads agent files; ruamel's pure parser, which words syntax errors
    better, is the fallback. Both must give the same data and lines."""
    import _ruamel_yaml  # noqa: F401  (a declared dependency on CPython)

    from agentstage.yamlload import _build

    samples = sorted((Path(__file__).parent.parent / "sample-repo" / "agents").glob("*/*.yaml"))
    assert samples
    for path in samples:
        text = path.read_text()
        fast_lines: dict[Any, int] = {}
        pure_lines: dict[Any, int] = {}
        assert _build(text, fast_lines, fast=True) == _build(text, pure_lines, fast=False)
        assert fast_lines == pure_lines
