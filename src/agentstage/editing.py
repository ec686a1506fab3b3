"""Edits on staging without a checkout: init, new, set, unset. Each is one commit."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentstage.agents import agent_state, resolve_identity
from agentstage.config import AGENTS_DIR, agent_dir, load_agent
from agentstage.edit import Edit, apply_edits
from agentstage.errors import Conflict, NotFound, UsageError
from agentstage.faults import crash_point
from agentstage.ids import check_agent_id
from agentstage.semdiff import diff_configs
from agentstage.store import STAGING, Store

AGENT_TEMPLATE = """\
# {agent}: settings. Edit on staging; nothing reaches end users until you publish.
name: {name}
description: ""
model:
  provider: {provider}
  name: {model}
  temperature: 0.2
access: private
tags: []
"""

INSTRUCTIONS_TEMPLATE = """\
# {agent}: instructions, in order. Each needs a unique id.
- id: persona
  text: |
    You are {name}. Be concise and accurate.
"""


def commit_agent_files(store: Store, agent: str, old_files: Mapping[str, bytes] | None,
                       new_files: Mapping[str, bytes] | None, message: str,
                       author: str | None, parent: str | None) -> dict[str, Any]:
    """Validate *new_files*, commit them as `agents/<agent>` on staging (compare-and-swap
    from *parent*), and report the commit with the field changes it makes."""
    new = load_agent(agent, new_files) if new_files is not None else None
    old = load_agent(agent, old_files) if old_files is not None else None
    who = resolve_identity(store, author)
    commit = store.commit_agent(parent, agent, new_files, message, who)
    crash_point("edit:after-commit")
    store.move_staging(parent, commit, agent_dir(agent), message.splitlines()[0], who)
    changes = diff_configs(old.as_dict() if old else None, new.as_dict() if new else None)
    return {"agent": agent, "commit": commit, "changes": [c.as_json() for c in changes]}


def _message(message: str | None, default: str) -> str:
    text = (message or "").strip()
    return text if text else default


def set_fields(store: Store, agent: str, edits: Sequence[Edit], message: str | None = None,
               author: str | None = None) -> dict[str, Any]:
    state = agent_state(store, agent)
    files = store.agent_files(state.staging, agent)
    if files is None:
        raise NotFound(f"no agent {agent!r} on staging",
                       hint=f"create it with: agentstage new {agent} --name 'Name'")
    new_files = apply_edits(files, edits)
    if new_files == files:
        return {"agent": agent, "commit": None, "changes": []}
    from agentstage.fieldpath import render_path

    default = f"{agent}: " + ", ".join(
        ("unset " if e.remove else "set ") + render_path(e.path) for e in edits)
    return commit_agent_files(store, agent, files, new_files, _message(message, default), author,
                              state.staging)


def new_agent(store: Store, agent: str, name: str, model: str = "gpt-4o",
              provider: str = "openai", message: str | None = None,
              author: str | None = None) -> dict[str, Any]:
    check_agent_id(agent)
    if not name.strip():
        raise UsageError("--name must not be empty")
    parent = store.ref(STAGING)
    if parent is not None and store.agent_tree(parent, agent) is not None:
        raise Conflict(f"agent {agent!r} already exists on staging",
                       hint=f"edit it with 'agentstage set {agent} ...'")
    values = {"agent": agent, "name": _yaml_str(name), "model": _yaml_str(model),
              "provider": _yaml_str(provider)}
    files = {"agent.yaml": AGENT_TEMPLATE.format(**values).encode(),
             "instructions.yaml": INSTRUCTIONS_TEMPLATE.format(
                 agent=agent, name=name.replace("\n", " ")).encode()}
    return commit_agent_files(store, agent, None, files,
                              _message(message, f"{agent}: new agent {name}"), author, parent)


def _yaml_str(text: str) -> str:
    """*text* as a YAML scalar that reads back as the same string."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9 ._()/-]*", text) and text.strip() == text and \
            text.lower() not in ("null", "true", "false"):
        return text
    return json.dumps(text)


def init_repo(path: Path, bare: bool = False, author: str | None = None) -> dict[str, Any]:
    """Make or adopt a repository: a staging branch whose tree has `agents/`."""
    import pygit2

    existing = path.exists() and pygit2.discover_repository(str(path)) is not None
    if not existing:
        path.mkdir(parents=True, exist_ok=True)
    store = Store.open(path) if existing else Store.init(path, bare=bare)
    staging = store.ref(STAGING)
    actions: list[str] = []
    if staging is None and existing:
        head = store.head_commit()
        if head is not None:
            who = resolve_identity(store, author)
            store.update_refs({STAGING: (None, head)}, "agentstage init: staging from HEAD", who)
            staging = head
            actions.append(f"created branch staging at HEAD ({head[:12]})")
    if staging is None or not store.has_path(staging, AGENTS_DIR):
        who = resolve_identity(store, author)
        commit = store.commit_files(staging, {f"{AGENTS_DIR}/.gitkeep": b""},
                                    "agentstage: initialize agents/", who)
        store.move_staging(staging, commit, AGENTS_DIR, "agentstage init", who)
        staging = commit
        actions.append("added agents/ on staging")
    return {"path": str(store.workdir or store.git_dir), "staging": staging,
            "created": not existing, "bare": store.is_bare,
            "actions": actions or ["already initialized: nothing to do"]}
