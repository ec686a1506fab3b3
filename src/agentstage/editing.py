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
from agentstage.errors import Conflict, InvalidConfig, NotFound, Problem, UsageError, warn
from agentstage.faults import crash_point
from agentstage.ids import check_agent_id
from agentstage.model import SECTIONS, AgentConfig
from agentstage.semdiff import Change, diff_configs
from agentstage.store import STAGING, Store
from agentstage.yamlload import parse_yaml

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
                       author: str | None, parent: str | None,
                       tolerate: bool = False) -> dict[str, Any]:
    """Validate *new_files*, commit them as `agents/<agent>` on staging (compare-and-swap
    from *parent*), and report the commit with the field changes it makes.

    The old files may be invalid (an edit may be the way out of that); the new ones must
    be valid unless *tolerate*, when the caller has judged their problems acceptable."""
    if new_files is not None and not tolerate:
        load_agent(agent, new_files)
    who = resolve_identity(store, author)
    commit = store.commit_agent(parent, agent, new_files, message, who)
    crash_point("edit:after-commit")
    store.move_staging(parent, commit, agent_dir(agent), message.splitlines()[0], who)
    changes = field_changes(agent, old_files, new_files)
    return {"agent": agent, "commit": commit, "changes": [c.as_json() for c in changes]}


def field_changes(agent: str, old_files: Mapping[str, bytes] | None,
                  new_files: Mapping[str, bytes] | None) -> list[Change]:
    """The field changes from *old_files* to *new_files* (None: no agent). When a side is
    invalid, both are compared as their files hold them, before validation."""
    old = check_agent(agent, old_files)[0] if old_files is not None else None
    new = check_agent(agent, new_files)[0] if new_files is not None else None
    if (old is None) == (old_files is None) and (new is None) == (new_files is None):
        return diff_configs(old.as_dict() if old else None, new.as_dict() if new else None)
    return diff_configs(agent_data(old_files), agent_data(new_files))


def check_agent(agent: str, files: Mapping[str, bytes]) -> tuple[AgentConfig | None,
                                                                  list[Problem]]:
    """(the loaded agent, []) or (None, every problem of its files)."""
    try:
        return load_agent(agent, files), []
    except InvalidConfig as exc:
        return None, exc.problems


def agent_data(files: Mapping[str, bytes] | None) -> dict[str, Any] | None:
    """The agent as its files hold it, before validation (the `show` shape, unchecked):
    what reads as YAML of each file, the rest left out."""
    if files is None:
        return None
    out: dict[str, Any] = {}
    for section in SECTIONS:
        raw = files.get(section.file)
        try:
            data = parse_yaml(raw, section.file).data if raw is not None else None
        except InvalidConfig:
            data = None
        if section.is_list:
            out[section.name] = data if isinstance(data, list) else []
        elif isinstance(data, dict):
            out.update(data)
    return out


def _message(message: str | None, default: str) -> str:
    text = (message or "").strip()
    return text if text else default


def set_fields(store: Store, agent: str, edits: Sequence[Edit], message: str | None = None,
               author: str | None = None) -> dict[str, Any]:
    """Apply *edits* to the agent on staging, one commit.

    An agent already invalid on staging may be edited when the edit leaves it valid, or
    with strictly fewer problems and none in a field it edits: so a typo can be removed.
    The problems that remain are then reported (a warning, and "problems" in the result)."""
    state = agent_state(store, agent)
    files = store.agent_files(state.staging, agent)
    if files is None:
        raise NotFound(f"no agent {agent!r} on staging",
                       hint=f"create it with: agentstage new {agent} --name 'Name'")
    try:
        new_files = apply_edits(files, edits)
    except InvalidConfig as exc:
        raise _located(agent, exc, state.version) from None
    if new_files == files:
        return {"agent": agent, "commit": None, "changes": []}
    before = check_agent(agent, files)[1]
    after = check_agent(agent, new_files)[1]
    if after:
        _judge(agent, edits, before, after, state.version)
    from agentstage.fieldpath import render_path

    default = f"{agent}: " + ", ".join(
        ("unset " if e.remove else "set ") + render_path(e.path) for e in edits)
    result = commit_agent_files(store, agent, files, new_files, _message(message, default),
                                author, state.staging, tolerate=bool(after))
    if after:
        n = len(after)
        warn(f"{agent} still has {n} problem{'s' if n != 1 else ''} on staging (fewer than "
             f"the {len(before)} before this edit); it cannot be published until "
             f"{'they are' if n != 1 else 'it is'} fixed:\n" + "\n".join(f"  {p}" for p in after))
        result["problems"] = [p.as_json() for p in after]
    return result


def _judge(agent: str, edits: Sequence[Edit], before: list[Problem], after: list[Problem],
           published: int) -> None:
    """Refuse an edit whose result has problems, unless it is a step out of worse ones:
    strictly fewer problems, none of them in a field the edit sets or unsets."""
    from agentstage.fieldpath import render_path

    def under(problem: Problem, path: str) -> bool:
        return problem.path == path or problem.path.startswith((path + ".", path + "["))

    paths = [render_path(e.path) for e in edits]
    own = [p for p in after if any(under(p, path) for path in paths)]
    if before and len(after) < len(before) and not own:
        return
    hint = None
    if before:
        n = len(before)
        hint = (f"{agent} already had {n} problem{'s' if n != 1 else ''} on staging; an edit "
                "is taken when it leaves fewer and adds none: fix more of them in the same "
                f"command (agentstage set/unset {agent} ...)")
        if published:
            hint += (f", or return to a publish with 'agentstage restore {agent} "
                     f"v{published}'")
    raise InvalidConfig(after, hint=hint or "fix the values named above, then run the "
                        "command again")


def _located(agent: str, exc: InvalidConfig, published: int) -> InvalidConfig:
    """An edit's InvalidConfig with files named by their place in the repository, and for a
    file that does not read as YAML, the way out: set and unset need its data."""
    base = agent_dir(agent)
    problems = [p if "/" in p.file else p._replace(file=f"{base}/{p.file}")
                for p in exc.problems]
    if any(p.path for p in problems):
        return InvalidConfig(problems, hint=exc.hint)
    hint = ("set and unset can only edit a file that reads as YAML: fix it in a checkout and "
            "commit it to staging")
    if published:
        hint += f", or return to a publish with 'agentstage restore {agent} v{published}'"
    return InvalidConfig(problems, hint=hint)


def new_agent(store: Store, agent: str, name: str, model: str = "gpt-4o",
              provider: str = "openai", message: str | None = None,
              author: str | None = None) -> dict[str, Any]:
    check_agent_id(agent)
    if not name.strip():
        raise UsageError("--name must not be empty")
    parent = store.ref(STAGING)
    if parent is None:  # an orphan staging would hold this agent alone, the others lost
        raise NotFound("no staging branch (refs/heads/staging) in this repository",
                       hint="run 'agentstage init': it makes staging from your default "
                            "branch, with the agents already there")
    if store.agent_tree(parent, agent) is not None:
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
    """Make or adopt a repository: a staging branch whose tree has `agents/`.

    An existing repository's staging starts from its default branch (see
    `_default_branch`), so the agents already there are on it."""
    import pygit2

    existing = path.exists() and pygit2.discover_repository(str(path)) is not None
    if not existing:
        path.mkdir(parents=True, exist_ok=True)
    store = Store.open(path) if existing else Store.init(path, bare=bare)
    staging = store.ref(STAGING)
    actions: list[str] = []
    adopted: dict[str, Any] | None = None
    if staging is None and existing:
        found = _default_branch(store)
        if found is not None:
            name, head = found
            who = resolve_identity(store, author)
            store.update_refs({STAGING: (None, head)}, f"agentstage init: staging from {name}",
                              who)
            staging = head
            count = len(store.list_agents(head))
            agents = f"{count} agent{'s' if count != 1 else ''}" if count else "no agents"
            actions.append(f"created branch staging from {name} ({head[:12]}) with {agents}")
            adopted = {"from": name, "commit": head, "agents": store.list_agents(head)}
            if store.ref(f"refs/remotes/{name}") == head and _track(store, name):
                actions.append(f"staging tracks {name}")
    if staging is None or not store.has_path(staging, AGENTS_DIR):
        who = resolve_identity(store, author)
        commit = store.commit_files(staging, {f"{AGENTS_DIR}/.gitkeep": b""},
                                    "agentstage: initialize agents/", who)
        store.move_staging(staging, commit, AGENTS_DIR, "agentstage init", who)
        staging = commit
        actions.append("added agents/ on staging")
    branch = store.head_branch()
    if adopted is not None and branch is not None and branch != STAGING:
        actions.append("edit it in this checkout after 'git switch staging'")
    return {"path": str(store.workdir or store.git_dir), "staging": staging,
            "created": not existing, "bare": store.is_bare, "adopted": adopted,
            "actions": actions or ["already initialized: nothing to do"]}


def _track(store: Store, remote_branch: str) -> bool:
    """Make staging track *remote_branch* (`origin/staging`), as `git switch staging` would."""
    import subprocess

    remote = remote_branch.partition("/")[0]
    where = str(store.workdir or store.git_dir)
    for key, value in (("remote", remote), ("merge", STAGING)):
        done = subprocess.run(["git", "-C", where, "config", f"branch.staging.{key}", value],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0:  # staging is made; only the tracking is missing
            warn(f"could not make staging track {remote_branch}: {done.stderr.strip()}; "
                 f"run: git branch --set-upstream-to={remote_branch} staging")
            return False
    return True


def _default_branch(store: Store) -> tuple[str, str] | None:
    """(name, commit) that staging starts from in an existing repository: the team's
    staging when a remote has one, else the first of HEAD, main, master that holds agents,
    else the first of them that exists; None in an empty repository."""
    remotes = sorted((r.split("/")[2] != "origin", r) for r in store.refs("refs/remotes/")
                     if r.count("/") == 3 and r.endswith("/staging"))
    for _other, ref in remotes[:1]:
        commit = store.ref(ref)
        if commit is not None:
            return ref.removeprefix("refs/remotes/"), commit
    branches = [(name, store.ref(f"refs/heads/{name}")) for name in ("main", "master")]
    candidates = [(name, commit) for name, commit in branches if commit is not None]
    head = store.head_commit()
    if head is not None:
        branch = store.head_branch()
        name = branch.removeprefix("refs/heads/") if branch else next(
            (n for n, c in candidates if c == head), "HEAD")
        candidates.insert(0, (name, head))
    for name, commit in candidates:
        if store.list_agents(commit):
            return name, commit
    return candidates[0] if candidates else None
