"""Strict YAML 1.2 loading from bytes.

The document is built straight from the parser's event stream, so nothing the
YAML spec lets a document do behind the reader's back gets through: anchors and
aliases, tags beyond the core schema, duplicate keys, several documents, deep
nesting. Plain scalars resolve by the YAML 1.2 core schema (`no` is a string).
Every value's line is recorded, so later errors can name file:line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agentstage.errors import InvalidConfig, Problem

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_VALUES = 50_000  # far beyond any agent; bounds the time and memory of a hostile file
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what every JSON and config consumer can hold

Pos = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_CORE_TAGS = {_TAG + n for n in ("str", "int", "float", "bool", "null", "map", "seq")}

_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF_NAN = re.compile(r"[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN")


@dataclass
class Document:
    """A loaded YAML document: plain Python data and the line of every value."""

    file: str
    data: Any
    lines: dict[Pos, int] = field(default_factory=dict)

    def line_of(self, pos: Pos) -> int | None:
        """The line of *pos*, or of its nearest recorded ancestor."""
        for n in range(len(pos), -1, -1):
            line = self.lines.get(pos[:n])
            if line is not None:
                return line
        return None


class _Fail(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _tag_name(tag: object) -> str | None:
    if tag is None:
        return None
    return tag if isinstance(tag, str) else str(tag)


def _resolve_plain(value: str, line: int) -> Any:
    if _NULL.fullmatch(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    number: int | None = None
    try:
        if _INT10.fullmatch(value):
            number = int(value)
        elif _INT8.fullmatch(value):
            number = int(value[2:], 8)
        elif _INT16.fullmatch(value):
            number = int(value[2:], 16)
    except ValueError:  # more digits than Python converts
        number = INT_MAX + 1
    if number is not None:
        if not INT_MIN <= number <= INT_MAX:
            shown = value if len(value) <= 20 else value[:20] + "..."
            raise _Fail(line, f"number {shown} is too large: integers must fit in 64 bits")
        return number
    if _FLOAT.fullmatch(value):
        real = float(value)
        if math.isinf(real):
            raise _Fail(line, f"number {value[:20]} is out of range")
        return real
    if _INF_NAN.fullmatch(value):
        raise _Fail(line, f"{value} is not allowed: numbers must be finite")
    return value


def _scalar(event: Any, line: int) -> Any:
    tag = _tag_name(event.tag)
    value: str = event.value
    if event.style == ">":
        value = value.replace("\a", "")  # the round-trip scanner marks folds with BEL
    if tag in (None, "!"):
        plain = event.implicit[0] and not event.style and tag is None  # C parser: style ''

        return _resolve_plain(value, line) if plain else value
    if tag not in _CORE_TAGS:
        raise _Fail(line, f"tag {tag} is not allowed: only plain YAML values are accepted")
    kind = tag[len(_TAG):]
    if kind == "str":
        return value
    resolved: Any = _resolve_plain(value, line)
    kinds: dict[str, type | tuple[type, ...]] = {
        "int": int, "float": (int, float), "bool": bool, "null": type(None)}
    expected = kinds.get(kind)
    if expected is None:
        raise _Fail(line, f"tag !!{kind} cannot be used on a scalar")
    if isinstance(resolved, bool) and kind != "bool":
        resolved = value
    if not isinstance(resolved, expected):
        raise _Fail(line, f"{value!r} is not a valid !!{kind}")
    return float(resolved) if isinstance(resolved, int) and kind == "float" else resolved


def _decode(data: bytes, file: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise InvalidConfig(
            [Problem(file, None, "",
                     f"file is {len(data)} bytes, over the cap of {MAX_FILE_BYTES}")],
            hint="split the content or shorten it",
        )
    if b"\0" in data:
        raise InvalidConfig([Problem(file, None, "", "binary file: not YAML text")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidConfig(
            [Problem(file, line, "", f"not UTF-8 text (bad byte at offset {exc.start})")],
            hint="save the file as UTF-8",
        ) from None
    return text.removeprefix("\ufeff")


def parse_yaml(data: bytes, file: str) -> Document:
    """Parse *data* (the bytes of *file*) into a Document, or raise InvalidConfig."""
    text = _decode(data, file)
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise InvalidConfig([Problem(file, None, "", "file is empty")],
                            hint="remove the file or give it content")
    doc = Document(file, None)
    try:
        try:
            doc.data = _build(text, doc.lines)
        except _Fail:
            raise
        except Exception:  # a syntax error: ruamel's own parser words it better
            doc.lines.clear()
            doc.data = _build(text, doc.lines, fast=False)
    except _Fail as fail:
        raise InvalidConfig([Problem(file, fail.line, "", fail.message)]) from None
    except Exception as exc:  # the parser's own errors carry a mark
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        character, position = getattr(exc, "character", None), getattr(exc, "position", None)
        if isinstance(character, int) and isinstance(position, int):  # the reader's error
            line = text[:position].count("\n") + 1
            problem = f"control character U+{character:04X} is not allowed (escape it in quotes)"
        raise InvalidConfig(
            [Problem(file, line, "", f"invalid YAML: {problem}".strip())],
            hint="check indentation and quoting near that line",
        ) from None
    return doc


def _events(text: str, fast: bool) -> Iterator[Any]:
    """The parser's events: libyaml's C parser when it is there and *fast* (about 20 times
    faster), else ruamel's own, whose syntax errors say more. Values are resolved here
    either way."""
    try:
        if not fast:
            raise ImportError
        from _ruamel_yaml import CParser
    except ImportError:
        from ruamel.yaml import YAML

        yield from YAML(typ="rt").parse(text)
        return
    parser = CParser(text)
    try:
        while parser.check_event():
            yield parser.get_event()
    finally:
        parser.dispose()


def _build(text: str, lines: dict[Pos, int], fast: bool = True) -> Any:
    from ruamel.yaml.events import (
        AliasEvent,
        DocumentStartEvent,
        MappingEndEvent,
        MappingStartEvent,
        ScalarEvent,
        SequenceEndEvent,
        SequenceStartEvent,
    )

    # Each frame: [container, position, pending key or _NO_KEY]
    stack: list[list[Any]] = []
    root: Any = None
    documents = 0
    no_key = object()

    def attach(value: Any, line: int) -> None:
        nonlocal root
        if not stack:
            root = value
            lines[()] = line
            return
        frame = stack[-1]
        container, pos = frame[0], frame[1]
        if isinstance(container, list):
            key: Pos = (*pos, len(container))
            lines[key] = line
            container.append(value)
        elif frame[2] is no_key:
            if not isinstance(value, str):
                raise _Fail(line, f"key {value!r} must be a string (quote it)")
            key = (*pos, value)
            if value in container:
                raise _Fail(line, f"duplicate key {value!r} (first at line {lines[key]})")
            frame[2] = value
            lines[key] = line
        else:
            container[frame[2]] = value
            frame[2] = no_key

    def child_pos(line: int) -> Pos:
        if not stack:
            return ()
        frame = stack[-1]
        if isinstance(frame[0], list):
            return (*frame[1], len(frame[0]))
        if frame[2] is no_key:
            raise _Fail(line, "a mapping or list cannot be a key")
        return (*frame[1], frame[2])

    for count, event in enumerate(_events(text, fast)):
        line = (event.start_mark.line + 1) if event.start_mark is not None else 1
        if count > MAX_VALUES:
            raise _Fail(line, f"more than {MAX_VALUES} values in one file")
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _Fail(line, "more than one YAML document in the file")
            continue
        if isinstance(event, AliasEvent):
            raise _Fail(line, f"alias *{event.anchor} is not allowed: write the value out")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Fail(line, f"anchor &{anchor} is not allowed: write values out in full")
        if isinstance(event, ScalarEvent):
            attach(_scalar(event, line), line)
        elif isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            is_map = isinstance(event, MappingStartEvent)
            tag = _tag_name(event.tag)
            if tag not in (None, "!", _TAG + ("map" if is_map else "seq")):
                raise _Fail(line, f"tag {tag} is not allowed: only plain YAML values are accepted")
            if len(stack) >= MAX_DEPTH:
                raise _Fail(line, f"nesting is deeper than {MAX_DEPTH} levels")
            pos = child_pos(line)
            stack.append([{} if is_map else [], pos, no_key, line])
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            frame = stack.pop()
            attach(frame[0], frame[3])
    return root
