"""Loading an agent that is plainly valid, without the validation library.

`config.load_agent` checks an agent's files against the pydantic models of model.py and
words every problem. Importing pydantic and building those models costs more than the
rest of a command's start-up together (about 145 ms against `import pygit2`'s 75), and
most loads are of valid files: the diff after an edit, the server hook checking a push.

So `load_valid` checks the same rules here, in plain Python, and answers only when it is
sure: the configuration exactly as `load_agent(...).as_dict()` gives it, or None (some
rule failed, or the input is one this reading does not decide), and then the caller
asks `load_agent`, which finds and words the problems. It never words one itself, so
there is one source of messages, and it could only be wrong by answering where
`load_agent` would refuse or answer otherwise. tests/test_fastload.py checks that it
never does, on the sample agents, on every field's edges and on thousands of generated
and mutated sections (where it answers exactly when the models find no problem, but
for text with a lone surrogate, which it leaves to them), and
that the fields below are model.py's, in its order. A change to model.py that is not
made here too fails those tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from agentstage.errors import InvalidConfig
from agentstage.escape import hidden
from agentstage.ids import is_agent_id
from agentstage.layout import DOC_SUFFIXES, ENTRY_ID_PATTERN, guardrail_type_problem, is_url
from agentstage.yamlload import MAX_FILE_BYTES, parse_yaml


class Unsure(Exception):
    """This reading does not decide: ask the models."""


Check = Callable[[Any], Any]
_REQUIRED: Any = object()
# ENTRY_ID_PATTERN without its anchors, for fullmatch: pydantic's `$` (Rust's) does not
# match before a final newline, as Python's does
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN.removeprefix("^").removesuffix("$"))
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # pydantic replaces them in keys


def _string(value: Any) -> str:
    if type(value) is not str:
        raise Unsure
    return value


def _nonempty(value: Any) -> str:
    if type(value) is not str or not value:
        raise Unsure
    return value


def _entry_id(value: Any) -> str:
    if type(value) is not str or _ENTRY_ID.fullmatch(value) is None:
        raise Unsure
    return value


def _tags(value: Any) -> list[str]:
    if type(value) is not list or not all(type(t) is str and 0 < len(t) <= 64
                                          for t in value):
        raise Unsure
    return list(value)


def _strings(value: Any) -> list[str]:
    if type(value) is not list or not all(type(t) is str for t in value):
        raise Unsure
    return list(value)


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise Unsure
    return value


def _one_of(*allowed: str) -> Check:
    def check(value: Any) -> str:
        if type(value) is not str or value not in allowed:
            raise Unsure
        return value
    return check


def _number(low: float | None = None, high: float | None = None, above: float | None = None
            ) -> Check:
    """A float (an integer is taken as its float, as pydantic does), within bounds."""
    def check(value: Any) -> float:
        if type(value) is not float and type(value) is not int:
            raise Unsure
        number = float(value)
        if (low is not None and not number >= low) or (high is not None
                                                       and not number <= high) \
                or (above is not None and not number > above):
            raise Unsure
        return number
    return check


def _integer(low: int | None = None, above: int | None = None) -> Check:
    def check(value: Any) -> int:
        if type(value) is not int or (low is not None and value < low) or (
                above is not None and value <= above):
            raise Unsure
        return value
    return check


def _free_form(value: Any) -> dict[str, Any]:
    """dict[str, JsonValue]: every parsed YAML value is one (the loader allows no other)."""
    if type(value) is not dict:
        raise Unsure
    return value


def _url(value: Any) -> str:  # model.Url
    if type(value) is not str or not is_url(value):
        raise Unsure
    return value


def _optional(check: Check) -> Check:
    def optional(value: Any) -> Any:
        return None if value is None else check(value)
    return optional


def _model(*fields: tuple[str, Check, Any]) -> Check:
    """A strict model that forbids other keys: each field checked, defaults filled in,
    in the model's order (a default of `list` or `dict` is a new empty one)."""
    names = {name for name, _check, _default in fields}

    def check(value: Any) -> dict[str, Any]:
        if type(value) is not dict or not names.issuperset(value):
            raise Unsure
        out: dict[str, Any] = {}
        for name, field, default in fields:
            if name in value:
                out[name] = field(value[name])
            elif default is _REQUIRED:
                raise Unsure
            else:
                out[name] = default() if default in (list, dict) else default
        return out
    return check


def _list_of(check: Check) -> Check:
    def checks(value: Any) -> list[Any]:
        if type(value) is not list:
            raise Unsure
        return [check(v) for v in value]
    return checks


# model.py's models, field by field and in order (test_fastload checks it against them).
MODEL_SETTINGS = _model(
    ("provider", _optional(_string), None), ("name", _nonempty, _REQUIRED),
    ("temperature", _optional(_number(low=0, high=2)), None),
    ("max_tokens", _optional(_integer(above=0)), None), ("parameters", _free_form, dict))
SETTINGS = _model(
    ("name", _nonempty, _REQUIRED), ("description", _string, ""),
    ("model", MODEL_SETTINGS, _REQUIRED),
    ("access", _one_of("private", "team", "organization", "public"), "private"),
    ("tags", _tags, list))
INSTRUCTION = _model(("id", _entry_id, _REQUIRED), ("text", _string, _REQUIRED))
KNOWLEDGE_SOURCE = _model(
    ("id", _entry_id, _REQUIRED), ("type", _one_of("corpus", "sharepoint", "website"),
                                   _REQUIRED),
    ("description", _string, ""), ("settings", _free_form, dict))
ACTION = _model(("id", _entry_id, _REQUIRED), ("enabled", _boolean, True),
                ("description", _string, ""), ("config", _free_form, dict))
TOOL = _model(("id", _entry_id, _REQUIRED), ("enabled", _boolean, True),
              ("description", _string, ""), ("config", _free_form, dict),
              ("actions", _list_of(ACTION), list))
GUARDRAIL = _model(("type", _entry_id, _REQUIRED), ("enabled", _boolean, True),
                   ("config", _free_form, dict))
KNOWLEDGE_SETTINGS: dict[str, Check] = {
    "corpus": _model(
        ("top_k", _optional(_integer(above=0)), None),
        ("chunk_size", _optional(_integer(above=0)), None),
        ("chunk_overlap", _optional(_integer(low=0)), None),
        ("min_score", _optional(_number(low=0, high=1)), None),
        ("metadata_filters", _free_form, dict)),
    "sharepoint": _model(
        ("site_url", _url, _REQUIRED), ("library", _optional(_string), None),
        ("folder", _optional(_string), None),
        ("include_subfolders", _optional(_boolean), None),
        ("exclude_folders", _strings, list), ("top_k", _optional(_integer(above=0)), None)),
    "website": _model(
        ("url", _url, _REQUIRED), ("crawl_depth", _optional(_integer(low=0)), None),
        ("max_pages", _optional(_integer(above=0)), None),
        ("include_patterns", _strings, list), ("exclude_patterns", _strings, list),
        ("refresh_interval_hours", _optional(_integer(above=0)), None),
        ("top_k", _optional(_integer(above=0)), None)),
}
# (file, section, its entries' model or None for the settings mapping, the naming key)
FILES: tuple[tuple[str, str, Check, str], ...] = (
    ("agent.yaml", "settings", SETTINGS, ""),
    ("instructions.yaml", "instructions", INSTRUCTION, "id"),
    ("knowledge.yaml", "knowledge", KNOWLEDGE_SOURCE, "id"),
    ("tools.yaml", "tools", TOOL, "id"),
    ("guardrails.yaml", "guardrails", GUARDRAIL, "type"),
)


def _unique(entries: list[Any], key: str) -> None:
    seen = [e.get(key) for e in entries if isinstance(e, dict)]
    named = [i for i in seen if isinstance(i, str)]
    if len(set(named)) != len(named):
        raise Unsure


def _plain_keys(node: Any) -> None:
    """No key with a hidden character (config._hidden_keys), no text with a lone
    surrogate anywhere (pydantic would change it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if hidden(key) is not None or _SURROGATE.search(key):
                raise Unsure
            _plain_keys(value)
    elif isinstance(node, list):
        for value in node:
            _plain_keys(value)
    elif isinstance(node, str) and _SURROGATE.search(node):
        raise Unsure


def section(name: str, check: Check, key: str, data: Any) -> Any:
    """One file's parsed data as its part of `as_dict()`, or Unsure."""
    _plain_keys(data)
    if not key:
        return check(data)
    if type(data) is not list:
        raise Unsure
    _unique(data, key)
    out = [check(entry) for entry in data]
    for entry in out:
        if name == "tools":
            _unique(entry["actions"], "id")
        elif name == "guardrails" and guardrail_type_problem(entry["type"]) is not None:
            raise Unsure
        elif name == "knowledge":
            KNOWLEDGE_SETTINGS[entry["type"]](entry["settings"])
    return out


def load_valid(agent: str, files: Mapping[str, bytes]) -> dict[str, Any] | None:
    """What `config.load_agent(agent, files).as_dict()` returns, when these checks are
    sure the files are valid; None when they are not (ask `load_agent`)."""
    if not is_agent_id(agent) or "agent.yaml" not in files:
        return None
    known = {file for file, _name, _check, _key in FILES}
    for name, data in files.items():
        if name.startswith(".") or len(data) > MAX_FILE_BYTES or (
                name not in known and not name.endswith(DOC_SUFFIXES)):
            return None
    out: dict[str, Any] = {}
    try:
        for file, name, check, key in FILES:
            raw = files.get(file)
            if raw is None:
                out[name] = []
                continue
            value = section(name, check, key, parse_yaml(raw, file).data)
            if key:
                out[name] = value
            else:
                out.update(value)
    except (Unsure, InvalidConfig):
        return None
    return out


def load_dict(agent: str, files: Mapping[str, bytes], where: str | None = None
              ) -> dict[str, Any]:
    """`config.load_agent(agent, files, where).as_dict()`: from `load_valid` when it
    answers, else from the models, which raise InvalidConfig with every problem."""
    config = load_valid(agent, files)
    if config is None:
        from agentstage.config import load_agent

        config = load_agent(agent, files, where).as_dict()
    return config
