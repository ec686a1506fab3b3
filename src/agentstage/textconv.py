"""A git textconv filter: one agent file as field-level lines, so `git diff` shows fields.

Git hands the filter a file that may be a temporary copy with another name, so
the section is read from the content: a mapping is agent.yaml; a list is told
by its entries' keys. Anything else is flattened generically, and a file that
is not YAML is given back unchanged: a diff driver must never stop `git diff`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from agentstage.escape import hidden, terminal
from agentstage.layout import LIST_KEYS
from agentstage.semdiff import entry_path, key_path

KNOWLEDGE_TYPES = frozenset({"corpus", "sharepoint", "website"})
FILE_SECTIONS = {"agent.yaml": "settings", **{f"{s}.yaml": s for s in LIST_KEYS}}
# Lists further down (tools' actions, free-form lists in `config`) are keyed by the first of
# these every entry has, unique; otherwise by position. Plain values are `path[]: value`.
FALLBACK_KEYS = ("id", "type", "name")

_BYTE_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")
_PLAIN_UNSAFE = re.compile(r"[-+]?(\.?[0-9]|\.inf|\.nan)|~|null|true|false|[\[{\"'|>&*!%@`#]",
                           re.IGNORECASE)


def guess_section(data: Any, name: str | None = None) -> str | None:
    """Which agent file *data* is, from its content; *name* decides only when content cannot."""
    if isinstance(data, Mapping):
        return "settings"
    if isinstance(data, list):
        entries = [e for e in data if isinstance(e, Mapping)]
        if entries and len(entries) == len(data):
            if any("actions" in e for e in entries):
                return "tools"
            if any("text" in e for e in entries):
                return "instructions"
            if all("type" in e and "id" not in e for e in entries):
                return "guardrails"
            if all("id" in e for e in entries):
                if any(e.get("type") in KNOWLEDGE_TYPES for e in entries):
                    return "knowledge"
                return "tools"
    if name is not None:
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        for file, section in FILE_SECTIONS.items():
            # git names its temporary copies XXXXXX_<basename>
            if base == file or base.endswith("_" + file):
                return section
    return None


def scalar(value: Any) -> str:
    """A one-line value: strings bare unless they would read as something else."""
    if isinstance(value, str):
        if (value == "" or value != value.strip() or hidden(value) is not None
                or _PLAIN_UNSAFE.match(value)):
            return json.dumps(value, ensure_ascii=False)
        return value
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


def _text_lines(path: str, text: str) -> Iterator[str]:
    body = text[:-1] if text.endswith("\n") else text
    for line in body.split("\n"):  # escaped first: rstrip would take U+2028 and U+0085 too
        yield f"{path}| {terminal(line)}".rstrip()
    if not text.endswith("\n"):
        yield f"{path}|\\ no newline at end of text"


def _list_key(entries: list[Any], preferred: str | None) -> str | None:
    keys = (preferred,) if preferred else FALLBACK_KEYS
    for key in keys:
        idents = [e.get(key) if isinstance(e, Mapping) else None for e in entries]
        if idents and all(isinstance(i, str) and i for i in idents) \
                and len(set(idents)) == len(idents):
            return key
    return None


def flatten(value: Any, path: str = "", key: str | None = None) -> Iterator[str]:
    """`path: value` lines for every leaf of *value*; list entries named by *key*."""
    if isinstance(value, Mapping):
        if not value:
            yield f"{path}: {{}}" if path else "{}"
        for k, v in value.items():
            yield from flatten(v, key_path(path, str(k)))
        return
    if isinstance(value, list):
        if not value:
            yield f"{path}: []" if path else "[]"
            return
        ident = _list_key(value, key)
        for index, entry in enumerate(value):
            if ident is not None:
                here = entry_path(path, str(entry[ident]))
                rest = {k: v for k, v in entry.items() if k != ident}
                if not rest:
                    yield f"{here}: {{}}"
                yield from flatten(rest, here)
            elif isinstance(entry, (Mapping, list)):
                yield from flatten(entry, f"{path}[{index}]")
            else:
                yield f"{path}[]: {scalar(entry)}"
        return
    if isinstance(value, str) and "\n" in value:
        yield from _text_lines(path or "(text)", value)
        return
    yield f"{path}: {scalar(value)}" if path else scalar(value)


def _plain(raw: bytes) -> bytes:
    """A file that is not YAML we accept, as it is, except what would drive the terminal:
    escaped (in a file that is not UTF-8, only the ASCII controls can be told)."""
    try:
        return terminal(raw.decode("utf-8"), newlines=True).encode("utf-8")
    except UnicodeDecodeError:
        return _BYTE_CONTROL.sub(lambda m: b"\\x%02x" % m.group()[0], raw)


def convert(raw: bytes, name: str | None = None) -> bytes:
    """The field-level view of one agent file, or *raw* unchanged when it is not YAML."""
    from agentstage.yamlload import parse_yaml

    try:
        data = parse_yaml(raw, name or "-").data
        section = guess_section(data, name)
        if section == "settings" or section is None:
            lines = list(flatten(data))
        else:
            lines = list(flatten(data, section, LIST_KEYS[section]))
    except Exception:  # not YAML, or not YAML we accept: git shows the plain diff instead
        return _plain(raw)
    # one field per line: a line break or control in a key or value is shown escaped
    return ("\n".join(terminal(line) for line in lines) + "\n").encode("utf-8")


__all__ = ["convert", "flatten", "guess_section", "scalar"]
