"""Loading an agent's files into an AgentConfig, with every problem located."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from agentstage.errors import InvalidConfig, NotFound, Problem
from agentstage.escape import describe, hidden
from agentstage.ids import AGENT_ID_RULE, is_agent_id, suggest_agent_id
from agentstage.layout import AGENTS_DIR as AGENTS_DIR
from agentstage.layout import DOC_SUFFIXES as DOC_SUFFIXES
from agentstage.layout import agent_dir as agent_dir
from agentstage.model import (
    AGENT_FILES,
    ENTRY_ID_PATTERN,
    KNOWLEDGE_SETTINGS,
    NESTED_KEYS,
    SECTION_BY_FILE,
    SECTIONS,
    AgentConfig,
    Section,
    guardrail_type_problem,
)
from agentstage.yamlload import MAX_FILE_BYTES, Document, Pos, parse_yaml


def format_path(section: Section, data: Any, loc: Iterable[str | int]) -> str:
    """A field path naming list entries by id: `tools[web-search].actions[search].enabled`."""
    parts: list[str] = [section.name] if section.is_list else []
    node = data
    parent_key = section.name if section.is_list else ""
    for step in loc:
        if isinstance(step, int):
            key = section.key if parent_key == section.name else NESTED_KEYS.get(
                (section.name, parent_key), "id"
            )
            entry = node[step] if isinstance(node, list) and step < len(node) else None
            ident = entry.get(key) if isinstance(entry, dict) else None
            parts.append(f"[{ident}]" if isinstance(ident, str) and ident else f"[{step}]")
            node = entry
        else:
            parts.append(f".{step}" if parts else str(step))
            node = node.get(step) if isinstance(node, dict) else None
            parent_key = str(step)
    return "".join(parts).lstrip(".")


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at *loc*, for "did you mean" hints."""
    current: Any = model
    for step in loc:
        if isinstance(step, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(step)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _message(error: Any, section: Section, loc: tuple[str | int, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        holder = _model_at(section.model, loc[:-1]) if section.is_list is False else _model_at(
            section.model, loc[1:-1]
        )
        message = "unknown field"
        if holder is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(holder.model_fields), n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
        return message
    if kind == "missing":
        return "required field is missing"
    text = str(error["msg"])
    text = text[0].lower() + text[1:]
    value = error.get("input")
    if isinstance(value, (str, int, float, bool)) or value is None:
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        text += f" (got {shown})"
    return text


def validate_section(doc: Document, section: Section) -> tuple[Any, list[Problem]]:
    """Validate one parsed file against its section's model."""
    problems: list[Problem] = []
    data = doc.data
    if section.is_list:
        if not isinstance(data, list):
            return None, [Problem(doc.file, doc.line_of(()), section.name,
                                  f"must be a list of entries, got {_kind(data)}")]
        problems += _duplicates(doc, section, data, (), section.key, section.name)
        for index, entry in enumerate(data):
            if isinstance(entry, dict) and section.name == "tools":
                actions = entry.get("actions")
                if isinstance(actions, list):
                    problems += _duplicates(doc, section, actions, (index, "actions"), "id",
                                            format_path(section, data, (index, "actions")))
        value: Any = []
        for index, entry in enumerate(data):
            try:
                value.append(section.model.model_validate(entry))
            except ValidationError as exc:
                problems += _problems(doc, section, exc, (index,))
        problems += _shape_problems(doc, section, data)
    else:
        if not isinstance(data, dict):
            return None, [Problem(doc.file, doc.line_of(()), "",
                                  f"must be a mapping of settings, got {_kind(data)}")]
        try:
            value = section.model.model_validate(data)
        except ValidationError as exc:
            problems += _problems(doc, section, exc, ())
    problems += _hidden_keys(doc, section)
    return (None if problems else value), problems


def _hidden_keys(doc: Document, section: Section) -> list[Problem]:
    """Keys holding a control or invisible character (zero-width, bidi, tag characters):
    refused wherever they are, free-form mappings included: `top\u200bp` displays as
    `topp`, and a bidi override makes a key read as another."""
    out: list[Problem] = []

    def walk(node: Any, pos: Pos) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                char = hidden(str(key))
                if char is not None:
                    loc = (*pos, key)
                    out.append(Problem(doc.file, doc.line_of(loc),
                                       format_path(section, doc.data, loc),
                                       f"key has the invisible or control character "
                                       f"{describe(char)}: not allowed in a key (type the key "
                                       "again)"))
                walk(value, (*pos, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*pos, index))

    walk(doc.data, ())
    return out


def _shape_problems(doc: Document, section: Section, data: list[Any]) -> list[Problem]:
    """The free-form parts that have a known shape: a guardrail's type (known, or
    custom-<name> or x-<name>) and a knowledge source's settings (per its type)."""
    out: list[Problem] = []
    for index, entry in enumerate(data):
        kind = entry.get("type") if isinstance(entry, dict) else None
        if not (isinstance(kind, str) and re.fullmatch(ENTRY_ID_PATTERN, kind)):
            continue  # the section's model reports it
        if section.name == "guardrails":
            message = guardrail_type_problem(kind)
            if message is not None:
                loc: Pos = (index, "type")
                out.append(Problem(doc.file, doc.line_of(loc), format_path(section, data, loc),
                                   message))
            continue
        shape = KNOWLEDGE_SETTINGS.get(kind) if section.name == "knowledge" else None
        settings = entry.get("settings", {})
        if shape is None or not isinstance(settings, dict):
            continue
        try:
            shape.model_validate(settings)
        except ValidationError as exc:
            holder = Section("settings", section.file, shape, False, "")
            for error in exc.errors():
                inner = tuple(s for s in error["loc"] if isinstance(s, (str, int)))
                loc = _real_loc(data, (index, "settings", *inner))
                if "settings" not in entry:  # `url` missing: name it, at the entry's line
                    loc = (index, "settings", *inner)
                out.append(Problem(doc.file, doc.line_of(loc), format_path(section, data, loc),
                                   _message(error, holder, inner)))
    return out


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _problems(doc: Document, section: Section, exc: ValidationError, prefix: Pos) -> list[Problem]:
    out = []
    for error in exc.errors():
        loc: Pos = (*prefix, *(s for s in error["loc"] if isinstance(s, (str, int))))
        # pydantic adds union/constraint tags to loc (e.g. 'float', 'function-after'); drop them
        loc = _real_loc(doc.data, loc)
        out.append(Problem(doc.file, doc.line_of(loc), format_path(section, doc.data, loc),
                           _message(error, section, loc)))
    return out


def _real_loc(data: Any, loc: Pos) -> Pos:
    """Keep the prefix of *loc* that exists in the data, plus one missing last key."""
    node = data
    for n, step in enumerate(loc):
        if isinstance(node, dict) and isinstance(step, str) and step in node:  # noqa: SIM114  (separate branches let mypy narrow step)
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return loc[: n + 1] if isinstance(node, dict) and isinstance(step, str) else loc[:n]
    return loc


def _duplicates(doc: Document, section: Section, entries: list[Any], prefix: Pos, key: str,
                where: str) -> list[Problem]:
    seen: dict[str, int] = {}
    out = []
    for index, entry in enumerate(entries):
        ident = entry.get(key) if isinstance(entry, dict) else None
        if not isinstance(ident, str):
            continue
        if ident in seen:
            first = doc.line_of((*prefix, seen[ident]))
            out.append(Problem(doc.file, doc.line_of((*prefix, index, key)), f"{where}[{ident}]",
                               f"duplicate {key} {ident!r} (first at line {first})"))
        else:
            seen[ident] = index
    return out


def load_agent(agent: str, files: Mapping[str, bytes], where: str | None = None) -> AgentConfig:
    """Load an agent from its files' bytes (name -> bytes); report every problem at once.

    *where* is the directory shown in messages (defaults to agents/<agent>).
    """
    base = where if where is not None else agent_dir(agent)
    problems: list[Problem] = []
    if not is_agent_id(agent):
        problems.append(Problem(base, None, "", f"directory name {agent!r} is not a valid agent id:"
                                f" an agent id is {AGENT_ID_RULE} (rename it, e.g. to "
                                f"{suggest_agent_id(agent)!r})"))
    for name, data in files.items():
        if name.startswith("."):
            problems.append(Problem(f"{base}/{name}", None, "", "hidden files are not allowed "
                                    "in an agent: what goes live is what everyone sees "
                                    "(remove it, or rename it without the dot)"))
        elif len(data) > MAX_FILE_BYTES:
            problems.append(Problem(f"{base}/{name}", None, "", f"file is {len(data)} bytes, "
                                    f"over the cap of {MAX_FILE_BYTES}"))
        elif name not in SECTION_BY_FILE and not name.endswith(DOC_SUFFIXES):
            close = difflib.get_close_matches(name, AGENT_FILES, n=1)
            hint = (f" (did you mean {close[0]}?)" if close
                    else f" (expected {', '.join(AGENT_FILES)})")
            problems.append(Problem(f"{base}/{name}", None, "", "unknown file" + hint))
    values: dict[str, Any] = {}
    for section in SECTIONS:
        raw = files.get(section.file)
        file = f"{base}/{section.file}"
        if raw is not None and len(raw) > MAX_FILE_BYTES:
            continue  # named above
        if raw is None:
            if not section.is_list:
                problems.append(Problem(file, None, "", "missing: every agent needs agent.yaml"))
            continue
        try:
            doc = parse_yaml(raw, file)
        except InvalidConfig as exc:
            problems += exc.problems
            continue
        value, found = validate_section(doc, section)
        problems += found
        if value is not None:
            values[section.name] = value
    if problems:
        problems.sort(key=lambda p: (p.file, p.line or 0))
        raise InvalidConfig(problems, hint="fix the files named above, then run the command again")
    return AgentConfig(**values)


def read_agent_dir(path: Path, where: str | None = None, root: Path | None = None
                   ) -> dict[str, bytes]:
    """The files of an agent directory on disk; links and subdirectories are problems, and
    so is a file over the cap. Hidden files are read like the others (load_agent refuses
    them, as it does in a git tree).

    *where* is the directory shown in messages (defaults to *path*). Below *root* (the
    repository, when *path* is in it; else *path*'s parent) no symbolic link is followed:
    a linked `agents` or agent directory is refused by name (worktree.py).
    """
    from agentstage.worktree import read_agent_files

    base = where if where is not None else str(path)
    path = Path(os.path.abspath(path))  # `..` taken lexically, no link followed
    root = Path(os.path.abspath(root)) if root is not None else None
    if root is None or path == root or not path.is_relative_to(root):
        root = path.parent
    return read_agent_files(root, path.relative_to(root).as_posix(), base)


def find_agent_dirs(root: Path) -> list[Path]:
    """The agent directories of the work tree *root* (and the links there, which reading
    refuses by name); a linked `agents` is refused, never followed."""
    from agentstage.worktree import subdirectories

    found = subdirectories(root, AGENTS_DIR)
    if found is None:
        raise NotFound(f"no {AGENTS_DIR}/ directory in {root}",
                       hint="run 'agentstage init' to make one")
    return [root / AGENTS_DIR / name for name, _kind in found]
