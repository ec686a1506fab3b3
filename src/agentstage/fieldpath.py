"""Field paths that name list entries by id, never by position.

`tools[web-search].actions[search].config.max_results` is the path of one field
of one agent: mapping keys joined by dots, list entries chosen by their id in
brackets (guardrails by their type).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentstage.errors import UsageError
from agentstage.layout import ENTRY_ID_PATTERN, KEY_PATTERN, LIST_KEYS

if TYPE_CHECKING:
    from agentstage.model import Section


@dataclass(frozen=True)
class Key:
    """A mapping key: `model`, `temperature`."""

    name: str


@dataclass(frozen=True)
class Entry:
    """A list entry chosen by its id (for guardrails: by its type)."""

    ident: str


FieldPath = tuple["Key | Entry", ...]

KEY_RE = re.compile(KEY_PATTERN)
ENTRY_ID_RE = re.compile(ENTRY_ID_PATTERN.strip("^$"))
_JSON = json.JSONDecoder()
LIST_SECTIONS = tuple(LIST_KEYS)
_LIST_KEYS = frozenset(Key(name) for name in LIST_SECTIONS)

FORM = "a field path looks like model.temperature or tools[web-search].actions[search].enabled"
HINT = (
    "list entries are named by id: instructions[ID], knowledge[ID], tools[ID], "
    "tools[ID].actions[ID], guardrails[TYPE]"
)


def _bad(text: str, pos: int, problem: str) -> UsageError:
    return UsageError(
        f"invalid field path {text!r} at column {pos + 1}: {problem}; {FORM}", hint=HINT
    )


def _takes_entry(parts: list[Key | Entry]) -> bool:
    """Whether the path so far names a list of entries (so `[ID]` may follow)."""
    if len(parts) == 1:
        return parts[0] in _LIST_KEYS
    return len(parts) == 3 and parts[0] == Key("tools") and isinstance(parts[1], Entry) \
        and parts[2] == Key("actions")


def parse_path(text: str) -> FieldPath:
    """Parse a field path, or raise UsageError saying where it went wrong."""
    if not text:
        raise UsageError(f"empty field path; {FORM}", hint=HINT)
    parts: list[Key | Entry] = []
    pos = 0
    end = len(text)
    while True:
        match = KEY_RE.match(text, pos)
        if match is None and pos < end and text[pos] == '"':  # a free-form key: "top.p"
            try:
                name, after = _JSON.raw_decode(text, pos)
            except ValueError:
                raise _bad(text, pos, "a quoted field name must be a JSON string") from None
            if parts and _takes_entry(parts):
                shown = render_path(tuple(parts))
                raise _bad(text, pos - 1, f"{shown} is a list: name an entry by its id, "
                           f"{shown}[ID]")
            parts.append(Key(name))
            pos = after
            if pos == end:
                return tuple(parts)
            if text[pos] != ".":
                raise _bad(text, pos, f"unexpected {text[pos]!r}, expected '.' or the end")
            pos += 1
            continue
        if match is None:
            if pos == end:
                problem = "expected a field name after '.'"
            elif text[pos] == ".":
                problem = "empty field name"
            else:
                problem = f"expected a field name, found {text[pos]!r}"
            raise _bad(text, pos, problem)
        if parts and _takes_entry(parts):
            shown = render_path(tuple(parts))
            raise _bad(text, pos - 1, f"{shown} is a list: name an entry by its id, {shown}[ID]")
        parts.append(Key(match.group()))
        pos = match.end()
        while pos < end and text[pos] == "[":
            if not _takes_entry(parts):
                shown = render_path(tuple(parts))
                if isinstance(parts[-1], Entry):
                    raise _bad(text, pos, f"expected '.' after {shown}, found '['")
                raise _bad(text, pos, f"{shown} is not a list of entries, so [ID] cannot follow")
            close = text.find("]", pos + 1)
            if close < 0:
                raise _bad(text, pos, "'[' is not closed")
            ident = text[pos + 1 : close]
            if not ident:
                raise _bad(text, pos + 1, "empty id in []")
            if not ENTRY_ID_RE.fullmatch(ident):
                raise _bad(text, pos + 1, f"{ident!r} is not a valid id (letters, digits and"
                           " _ . : -, starting with a letter or digit, at most 128 characters)")
            parts.append(Entry(ident))
            pos = close + 1
        if pos == end:
            return tuple(parts)
        if text[pos] != ".":
            raise _bad(text, pos, f"unexpected {text[pos]!r}, expected '.', '[' or the end")
        pos += 1


def render_path(path: FieldPath) -> str:
    """The text of *path*: keys joined by '.', entries as [ident]."""
    out: list[str] = []
    for part in path:
        if isinstance(part, Entry):
            out.append(f"[{part.ident}]")
        else:
            name = part.name if KEY_RE.fullmatch(part.name) else json.dumps(part.name,
                                                                            ensure_ascii=False)
            out.append(f".{name}" if out else name)
    return "".join(out)


def section_of(path: FieldPath) -> Section:
    """The section (file) a path lives in: a list section by its first key, else settings."""
    from agentstage.model import SECTION_BY_NAME

    first = path[0] if path else None
    if isinstance(first, Key) and first.name in LIST_SECTIONS:
        return SECTION_BY_NAME[first.name]
    return SECTION_BY_NAME["settings"]
