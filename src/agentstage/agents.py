"""Reading agents out of the store: configurations, versions, states, identities."""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

from agentstage.config import load_agent
from agentstage.errors import AgentstageError, NotFound, UsageError
from agentstage.ids import check_agent_id
from agentstage.model import AgentConfig
from agentstage.store import (
    PRODUCTION_PREFIX,
    STAGING,
    Identity,
    Store,
    parse_identity,
    production_ref,
    tag_ref,
)


def resolve_identity(store: Store, explicit: str | None) -> Identity:
    """Who: --author, else AGENTSTAGE_AUTHOR, else git's user.name and user.email."""
    if explicit:
        return parse_identity(explicit)
    env = os.environ.get("AGENTSTAGE_AUTHOR")
    if env:
        return parse_identity(env)
    found = store.identity()
    if found is None:
        raise UsageError(
            "no identity: agentstage records who made each change",
            hint='pass --author "Name <email>", set AGENTSTAGE_AUTHOR, or run '
                 "git config user.name 'Name' && git config user.email you@example.com",
        )
    return found


def staging_head(store: Store) -> str:
    head = store.ref(STAGING)
    if head is None:
        raise NotFound("no staging branch (refs/heads/staging) in this repository",
                       hint="run 'agentstage init' to create it")
    return head


def latest_version(store: Store, agent: str) -> int:
    """The highest N with a tag <agent>/vN; versions have no gaps, so probe, don't list."""
    if store.ref(tag_ref(agent, 1)) is None:
        return 0
    low, high = 1, 2
    while store.ref(tag_ref(agent, high)) is not None:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if store.ref(tag_ref(agent, mid)) is not None:
            low = mid
        else:
            high = mid
    return low


def load_at(store: Store, commit: str | None, agent: str, where: str = "") -> AgentConfig | None:
    """The agent's configuration at *commit*, None when it has no such agent."""
    files = store.agent_files(commit, agent)
    if files is None:
        return None
    shown = f"{where}:agents/{agent}" if where else None
    return load_agent(agent, files, shown)


class AgentState(NamedTuple):
    agent: str
    staging: str
    production: str | None
    version: int


def agent_state(store: Store, agent: str, must_exist: bool = True) -> AgentState:
    check_agent_id(agent)
    staging = staging_head(store)
    production = store.ref(production_ref(agent))
    if must_exist and production is None and store.agent_tree(staging, agent) is None:
        raise NotFound(f"no agent {agent!r} on staging or in production",
                       hint="list agents with 'agentstage agents'")
    return AgentState(agent, staging, production, latest_version(store, agent))


VERSION_RE = re.compile(r"v[1-9][0-9]*")  # ASCII digits only: str.isdigit takes any script


def parse_tag(agent: str, text: str) -> tuple[str, int]:
    """`vN` or `<agent>/vN` -> (tag name, N)."""
    name = text.removeprefix("refs/tags/")
    if "/" in name:
        owner, _, name = name.partition("/")
        if owner != agent:
            raise UsageError(f"tag {text!r} belongs to agent {owner!r}, not {agent!r}",
                             hint=f"use v<N> or {agent}/v<N>")
    if not VERSION_RE.fullmatch(name):
        raise UsageError(f"invalid tag {text!r}: expected vN or {agent}/vN",
                         hint=f"see the publishes with 'agentstage history {agent}'")
    version = int(name[1:])
    return f"{agent}/v{version}", version


def show_config(store: Store, agent: str, env: str) -> dict[str, Any]:
    state = agent_state(store, agent)
    if env == "staging":
        commit: str | None = state.staging
    elif env == "production":
        commit = state.production
        if commit is None:
            raise NotFound(f"{agent} has never been published",
                           hint=f"publish it with: agentstage publish {agent} -m 'why'")
    else:
        tag, _ = parse_tag(agent, env)
        info = store.tag(tag)
        if info is None:
            raise NotFound(f"no publish {tag}", hint=f"see 'agentstage history {agent}'")
        commit = info.target
    config = load_at(store, commit, agent, env)
    if config is None:
        raise NotFound(f"no agent {agent!r} in {env}")
    return config.as_dict()


def agents_table(store: Store) -> list[dict[str, Any]]:
    staging = staging_head(store)
    names = set(store.list_agents(staging))
    names |= {n.removeprefix(PRODUCTION_PREFIX) for n in store.refs(PRODUCTION_PREFIX)}
    rows = []
    for agent in sorted(names):
        production = store.ref(production_ref(agent))
        version = latest_version(store, agent)
        files = store.agent_files(staging, agent)
        name = ""
        if files is not None:
            try:
                name = load_agent(agent, files).settings.name
            except AgentstageError:  # an invalid agent is listed all the same
                name = "(invalid)"
        rows.append({
            "agent": agent,
            "name": name,
            "production": {"version": version or None,
                           "tag": f"{agent}/v{version}" if version else None,
                           "commit": production},
            "staging_differs": store.agent_tree(staging, agent)
            != store.agent_tree(production, agent),
        })
    return rows
