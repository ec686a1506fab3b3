"""The semantic diff of two agent configurations: only the fields that differ.

Works on `AgentConfig.as_dict()` objects (plain JSON values), so it needs nothing
beyond the standard library. List entries are matched by their key (`id`, or
`type` for guardrails), never by position, and reordering is not a change, except
for instructions, whose order is the prompt's: see `ORDERED` and `order_change`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agentstage.layout import ENTRY_ID_PATTERN, KEY_PATTERN
from agentstage.layout import LIST_KEYS as SECTION_KEYS
from agentstage.layout import NESTED_KEYS as NESTED_KEYS
from agentstage.layout import SECTION_ORDER as SECTION_ORDER

LONG_TEXT = 80
# Lists whose order is part of the configuration (the prompt's order): reordering their
# entries is a change of the list's path, production and staging the ids in order.
ORDERED = frozenset({"instructions"})

# Bare keys as fieldpath reads them; any other key is JSON-quoted.
_BARE_KEY = re.compile(KEY_PATTERN + r"\Z")
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN.strip("^$") + r"\Z")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What `value_at` returns for a path that names nothing."""


@dataclass(frozen=True)
class Change:
    section: str
    path: str
    change: str  # added | removed | modified
    production: Any  # the old side
    staging: Any  # the new side
    text_diff: tuple[str, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "section": self.section,
            "path": self.path,
            "change": self.change,
            "production": self.production,
            "staging": self.staging,
        }
        if self.text_diff is not None:
            out["text_diff"] = list(self.text_diff)
        return out


# -- paths -------------------------------------------------------------------


def key_path(parent: str, key: str) -> str:
    """`parent.key`; a key that is not an identifier (letters, digits, `_`, `-`) is JSON-quoted."""
    part = key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)
    return f"{parent}.{part}" if parent else part


def entry_path(parent: str, ident: str) -> str:
    """`parent[ident]`; an ident outside the entry-id grammar is JSON-quoted."""
    part = ident if _ENTRY_ID.match(ident) else json.dumps(ident, ensure_ascii=False)
    return f"{parent}[{part}]"


def _list_key(fields: tuple[str, ...]) -> str | None:
    """The key naming entries of the list at *fields* (the path's keys, entries skipped)."""
    if len(fields) == 1:
        return SECTION_KEYS.get(fields[0])
    if len(fields) == 2:
        return NESTED_KEYS.get((fields[0], fields[1]))
    return None


def value_at(config: Mapping[str, Any] | None, path: str) -> Any:
    """The value at *path* in an as_dict() config, or MISSING when nothing is there."""
    from agentstage.fieldpath import Key
    from agentstage.fieldpath import parse_path as parse_field_path

    node: Any = config
    fields: tuple[str, ...] = ()
    from agentstage.errors import UsageError

    try:
        parts = parse_field_path(path)
    except UsageError as exc:
        raise ValueError(f"not a field path: {exc.message}") from None
    for part in parts:
        if isinstance(part, Key):
            name = part.name
            if not isinstance(node, Mapping) or name not in node:
                return MISSING
            node = node[name]
            fields = (*fields, name)
        else:
            key = _list_key(fields)
            if key is None or not isinstance(node, list):
                return MISSING
            ident = part.ident
            node = next((e for e in node if isinstance(e, Mapping) and e.get(key) == ident),
                        MISSING)
            if node is MISSING:
                return MISSING
    return node


# -- comparing values ----------------------------------------------------------


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 are the same number
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return sorted((_canonical(v) for v in value), key=_dump)
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def same(a: Any, b: Any) -> bool:
    """Equal as configuration values: list order and 1 vs 1.0 do not matter, bool vs int does."""
    return _dump(_canonical(a)) == _dump(_canonical(b))


def _line_diff(old: str, new: str) -> tuple[str, ...]:
    """A unified diff of the lines, headers dropped. A final line break gained or lost is
    said in words on a last line, not with diff's `\\ No newline at end of file`."""
    out = list(difflib.unified_diff(_lines(old), _lines(new), lineterm=""))[2:]
    ended, ends = old.endswith("\n"), new.endswith("\n")
    if old and new and ended != ends:
        out.append(FINAL_NEWLINE_ADDED if ends else FINAL_NEWLINE_REMOVED)
    return tuple(out)


FINAL_NEWLINE_ADDED = "(line break added at the end of the text)"
FINAL_NEWLINE_REMOVED = "(line break removed at the end of the text)"


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines if text else []


def _is_long_text(value: Any) -> bool:
    return isinstance(value, str) and ("\n" in value or len(value) > LONG_TEXT)


# -- the diff --------------------------------------------------------------------


def diff_configs(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[Change]:
    """What changed from *old* (production side) to *new* (staging side).

    Either side may be None: the agent does not exist there.
    """
    changes = list(_diff_settings(old, new))
    for section, key in SECTION_KEYS.items():
        old_list = _entries(old, section)
        new_list = _entries(new, section)
        changes += _diff_keyed(section, section, (section,), old_list, new_list, key)
    return changes


def _entries(config: Mapping[str, Any] | None, section: str) -> list[Any] | None:
    if config is None:
        return None
    value = config.get(section)
    return value if isinstance(value, list) else []


def _diff_settings(old: Mapping[str, Any] | None,
                   new: Mapping[str, Any] | None) -> Iterator[Change]:
    def settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
        if config is None:
            return {}
        return {k: v for k, v in config.items() if k not in SECTION_KEYS}

    yield from _diff_mapping("settings", "", (), settings(old), settings(new))


def _diff_mapping(section: str, path: str, fields: tuple[str, ...],
                  old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for key, value in new.items():
        yield from _diff_value(section, key_path(path, key), (*fields, key),
                               old.get(key, MISSING), value)
    for key, value in old.items():
        if key not in new:
            yield Change(section, key_path(path, key), "removed", value, None)


def _diff_value(section: str, path: str, fields: tuple[str, ...],
                old: Any, new: Any) -> Iterator[Change]:
    if old is MISSING:
        yield Change(section, path, "added", None, new)
        return
    key = _list_key(fields)
    if key is not None and isinstance(old, list) and isinstance(new, list):
        yield from _diff_keyed(section, path, fields, old, new, key)
    elif isinstance(old, Mapping) and isinstance(new, Mapping):
        yield from _diff_mapping(section, path, fields, old, new)
    elif not same(old, new):
        text_diff = None
        if isinstance(old, str) and isinstance(new, str) and (
            _is_long_text(old) or _is_long_text(new)
        ):
            text_diff = _line_diff(old, new)
        yield Change(section, path, "modified", old, new, text_diff)


def _keyed(entries: list[Any], key: str) -> dict[str, Any] | None:
    """Entries by key, or None when some entry has no usable, unique key."""
    out: dict[str, Any] = {}
    for entry in entries:
        ident = entry.get(key) if isinstance(entry, Mapping) else None
        if not isinstance(ident, str) or ident in out:
            return None
        out[ident] = entry
    return out


def _diff_keyed(section: str, path: str, fields: tuple[str, ...],
                old: list[Any] | None, new: list[Any] | None, key: str) -> Iterator[Change]:
    # Either side None: the agent is absent there; each entry is one change.
    old_by = _keyed(old or [], key)
    new_by = _keyed(new or [], key)
    if old_by is None or new_by is None:
        # Not valid as_dict() input; compare the lists whole rather than guess.
        if old is None or new is None:
            yield Change(section, path, "added" if old is None else "removed",
                         None if old is None else old, new)
        elif not same(old, new):
            yield Change(section, path, "modified", old, new)
        return
    if path in ORDERED and old is not None and new is not None:
        common = new_by.keys() & old_by.keys()
        if [i for i in old_by if i in common] != [i for i in new_by if i in common]:
            # First, so that undoing it (a whole-list edit) comes before undoing entries.
            yield Change(section, path, "modified", list(old_by), list(new_by))
    for ident, entry in new_by.items():
        here = entry_path(path, ident)
        before = old_by.get(ident, MISSING)
        if before is MISSING:
            yield Change(section, here, "added", None, entry)
        else:
            yield from _diff_entry(section, here, fields, before, entry, key)
    for ident, entry in old_by.items():
        if ident not in new_by:
            yield Change(section, entry_path(path, ident), "removed", entry, None)


def _diff_entry(section: str, path: str, fields: tuple[str, ...],
                old: Mapping[str, Any], new: Mapping[str, Any], key: str) -> Iterator[Change]:
    rest_old = {k: v for k, v in old.items() if k != key}
    rest_new = {k: v for k, v in new.items() if k != key}
    yield from _diff_mapping(section, path, fields, rest_old, rest_new)


# -- the order of a list ------------------------------------------------------------


def is_order_change(change: Change) -> bool:
    """Whether *change* is the reordering of an ordered list (values: ids in order)."""
    return change.path in ORDERED and change.change == "modified" and all(
        isinstance(v, list) and all(isinstance(i, str) for i in v)
        for v in (change.production, change.staging))


def undo_order(change: Change, current: Mapping[str, Any]) -> tuple[list[Any] | None, bool]:
    """Undo an order change on *current* (an as_dict() config): (the list's entries in the
    old order, or None when there is nothing to do; whether it clashes with later edits).

    Compared over the ids both sides still have: in the old order already, nothing to do;
    in the new order, the entries are put back in the old order (entries the change did
    not know keep their places); in any third order, the list was reordered since: a clash.
    """
    entries = value_at(current, change.path)
    key = SECTION_KEYS.get(change.path, "id")
    if not isinstance(entries, list):
        return None, False
    ids = [e.get(key) if isinstance(e, Mapping) else None for e in entries]
    before, after = list(change.production), list(change.staging)

    def order(seq: list[Any], among: Iterable[Any]) -> list[Any]:
        wanted = set(among)
        return [i for i in seq if i in wanted]

    if order(ids, before) == order(before, ids):
        return None, False
    if order(ids, after) != order(after, ids):
        return None, True
    known = set(before)
    slots = [n for n, i in enumerate(ids) if i in known]
    moved = iter(order(before, ids))
    by_id = {i: e for i, e in zip(ids, entries, strict=True)}
    out = list(entries)
    for n in slots:
        out[n] = by_id[next(moved)]
    return out, False


# -- summaries -------------------------------------------------------------------


def _section_of(change: Change | Mapping[str, Any]) -> str:
    return change.section if isinstance(change, Change) else str(change["section"])


def section_counts(changes: Iterable[Change | Mapping[str, Any]]) -> list[tuple[str, int]]:
    """(section, number of changes) for sections with changes, in section order."""
    counts: dict[str, int] = {}
    for change in changes:
        section = _section_of(change)
        counts[section] = counts.get(section, 0) + 1
    known = [(s, counts.pop(s)) for s in SECTION_ORDER if s in counts]
    return known + list(counts.items())


def summarize(changes: Iterable[Change | Mapping[str, Any]]) -> str:
    """E.g. "3 changes: settings 1, tools 2"; "no changes" for none."""
    counts = section_counts(changes)
    total = sum(n for _, n in counts)
    if not total:
        return "no changes"
    noun = "change" if total == 1 else "changes"
    return f"{total} {noun}: " + ", ".join(f"{s} {n}" for s, n in counts)
