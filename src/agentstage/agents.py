"""Reading agents out of the store: configurations, versions, states, identities."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from agentstage.errors import AgentstageError, InvalidConfig, NotFound, UsageError
from agentstage.ids import check_agent_id, is_agent_id
from agentstage.store import (
    PRODUCTION_PREFIX,
    STAGING,
    TAG_PREFIX,
    Identity,
    Lru,
    Store,
    parse_identity,
    production_ref,
)


def resolve_identity(store: Store, explicit: str | None) -> Identity:
    """Who: --author, else AGENTSTAGE_AUTHOR, else git's user.name and user.email."""
    if explicit:
        return parse_identity(explicit)
    env = os.environ.get("AGENTSTAGE_AUTHOR")
    if env:
        return parse_identity(env, "AGENTSTAGE_AUTHOR")
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
        remote = next((r for r in store.refs("refs/remotes/") if r.endswith("/staging")), None)
        if remote is not None:
            short = remote.removeprefix("refs/remotes/")
            raise NotFound("no local staging branch in this clone",
                           hint=f"make one that tracks the team's: git branch --track staging "
                                f"{short} (or git checkout staging)")
        raise NotFound("no staging branch (refs/heads/staging) in this repository",
                       hint="run 'agentstage init' to create it")
    return head


class Versions(NamedTuple):
    """One agent's publish tags as they exist: the vN numbers, and the other refs in its
    tag namespace (`refs/tags/<agent>/v2/x`, `v01`: never written by a publish)."""

    agent: str
    numbers: tuple[int, ...]  # sorted
    strays: tuple[str, ...] = ()  # full ref names

    @property
    def latest(self) -> int:
        """The highest N whose tags 1..N all exist: versions have no gaps, so a number
        past a gap is not one of the agent's versions (doctor reports it)."""
        latest = 0
        for number in self.numbers:
            if number != latest + 1:
                break
            latest = number
        return latest

    @property
    def beyond(self) -> tuple[int, ...]:
        """The numbers past the first gap."""
        latest = self.latest
        return tuple(n for n in self.numbers if n > latest)

    def missing(self, shown: int = 3) -> str:
        """The missing numbers below the highest, as ranges: `v3, v5-v7 and 2 more`."""
        ranges: list[tuple[int, int]] = []
        previous = 0
        for number in self.numbers:
            if number > previous + 1:
                ranges.append((previous + 1, number - 1))
            previous = number
        text = ", ".join(f"v{a}" if a == b else f"v{a}-v{b}" for a, b in ranges[:shown])
        more = len(ranges) - shown
        return text + (f" and {more} more range{'s' if more != 1 else ''}" if more > 0 else "")

    def skipped(self) -> str | None:
        """What a listing of the versions leaves out and why, for a warning; None when
        nothing is left out."""
        beyond = [f"{TAG_PREFIX}{self.agent}/v{n}" for n in self.beyond]
        out = []
        if beyond:
            names = ", ".join(beyond[:3]) + (f" and {len(beyond) - 3} more" if
                                             len(beyond) > 3 else "")
            out.append(f"skipped {names}: not versions of {self.agent}, "
                       f"v{self.latest + 1} is missing")
        if self.strays:
            names = ", ".join(self.strays[:3]) + (f" and {len(self.strays) - 3} more" if
                                                  len(self.strays) > 3 else "")
            out.append(f"skipped {names}: not a publish tag name (<agent>/v<N>)")
        return "; ".join(out) + "; 'agentstage doctor' says what to do" if out else None


def versions_of(agent: str, names: Iterable[str]) -> Versions:
    """The Versions of *agent* from the ref names under refs/tags/<agent>/."""
    prefix = f"{TAG_PREFIX}{agent}/"
    numbers, strays = [], []
    for name in names:
        rest = name[len(prefix):]
        if name.startswith(prefix) and VERSION_RE.fullmatch(rest):
            numbers.append(int(rest[1:]))
        else:
            strays.append(name)
    return Versions(agent, tuple(sorted(numbers)), tuple(sorted(strays)))


def list_versions(store: Store, agent: str) -> Versions:
    """The agent's tags as they exist: one listing of its tag namespace, whose cost is
    that of the refs there, never a count up to a number read from a ref name."""
    return versions_of(agent, store.ref_names(f"{TAG_PREFIX}{agent}/"))


def latest_version(store: Store, agent: str) -> int:
    """The highest N with tags <agent>/v1 .. vN (see Versions.latest)."""
    return list_versions(store, agent).latest


# (agent, its tree id) -> its configuration: a tree id names the files' bytes, so a
# configuration is loaded once per process, and once per repository (diskcache.py).
_CONFIGS: Lru[tuple[str, str], dict[str, Any]] = Lru(20_000)


def load_at(store: Store, commit: str | None, agent: str, where: str = ""
            ) -> dict[str, Any] | None:
    """The agent's configuration at *commit* as `AgentConfig.as_dict()` gives it, None when
    it has no such agent; InvalidConfig, naming `<where>:agents/<agent>`, when its files do
    not load. The answer is shared: read it, never change it."""
    tree = store.agent_tree(commit, agent)
    if tree is None:
        return None
    return _load(store, commit, agent, tree, where)


def _load(store: Store, commit: str | None, agent: str, tree: str, where: str
          ) -> dict[str, Any]:
    key = (agent, tree)
    config = _CONFIGS.get(key)
    if config is not None:
        return config
    disk = store.disk_cache
    config = disk.config(agent, tree) if disk is not None else None
    if config is None:
        from agentstage.fastload import load_dict

        config = load_dict(agent, store.agent_files(commit, agent) or {},
                           f"{where}:agents/{agent}" if where else None)
        if disk is not None:
            disk.put_config(agent, tree, config)
    _CONFIGS.put(key, config)
    return config


class AgentState(NamedTuple):
    agent: str
    staging: str
    production: str | None  # the production the team sees (see `team_production`)
    version: int
    local: str | None = None  # this repository's production ref: what a publish swaps
    remote: str | None = None  # the remote staging tracks, when this is a clone
    in_production: bool = False  # production holds agents/<agent>

    @property
    def retired(self) -> bool:
        """Published, and the newest publish took the agent out of production."""
        return self.production is not None and self.version > 0 and not self.in_production


_ASK: tuple[str, str] = ("", "")  # team_production reads the upstream itself


def team_production(store: Store, agent: str, version: int,
                    upstream: tuple[str, str] | None = _ASK
                    ) -> tuple[str | None, str | None, str | None]:
    """(production, local production ref, upstream remote) of *agent*.

    In a repository whose staging tracks no remote (the store itself, or a git server),
    production is the local ref. In a clone, it is what the team published: the newest
    (in ancestry) of the newest publish tag's commit, the remote-tracking production ref
    and the local ref; a clone's missing or stale local ref is not a problem."""
    local = store.ref(production_ref(agent))
    found = store.upstream(STAGING) if upstream is _ASK else upstream
    if found is None:
        return local, local, None
    remote = found[0]
    tagged = store.tag(f"{agent}/v{version}") if version else None
    best: str | None = None
    for commit in (tagged.target if tagged else None,
                   store.remote_ref(remote, production_ref(agent)), local):
        if commit is not None and commit != best and (
                best is None or store.is_ancestor(best, commit)):
            best = commit
    return best, local, remote


def agent_state(store: Store, agent: str, must_exist: bool = True) -> AgentState:
    check_agent_id(agent)
    staging = staging_head(store)
    version = latest_version(store, agent)
    production, local, remote = team_production(store, agent, version)
    if must_exist and production is None and store.agent_tree(staging, agent) is None:
        raise NotFound(f"no agent {agent!r} on staging or in production",
                       hint="list agents with 'agentstage agents'")
    live = production is not None and store.agent_tree(production, agent) is not None
    return AgentState(agent, staging, production, version, local, remote, live)


VERSION_RE = re.compile(r"v[1-9][0-9]{0,17}")  # ASCII digits, and few: int() caps digits


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
        if state.retired:
            raise NotFound(f"{agent} was retired by {agent}/v{state.version}: it is not in "
                           "production", hint=f"see 'agentstage history {agent}'")
    else:
        tag, _ = parse_tag(agent, env)
        info = store.tag(tag)
        if info is None:
            raise NotFound(f"no publish {tag}", hint=f"see 'agentstage history {agent}'")
        commit = info.target
    config = load_at(store, commit, agent, env)
    if config is None:
        raise NotFound(f"no agent {agent!r} in {env}")
    return config


class _Listing(NamedTuple):
    staging: str
    upstream: tuple[str, str] | None
    agents: list[str]  # sorted ids on staging or in production
    tags: dict[str, list[str]]  # agent -> its refs under refs/tags/<agent>/


def _listing(store: Store) -> _Listing:
    """Staging, the upstream, every agent and every tag, each read once."""
    staging = staging_head(store)
    names = set(store.list_agents(staging))
    prefixes = [PRODUCTION_PREFIX]
    found = store.upstream(STAGING)
    if found is not None:  # a clone: the team's production refs too
        tracking = store.remote_tracking(found[0], production_ref("x"))
        if tracking is not None:
            prefixes.append(tracking[:-1])
    for prefix in prefixes:
        names |= {n.removeprefix(prefix) for n in store.ref_names(prefix)}
    tags: dict[str, list[str]] = {}
    for ref in store.ref_names(TAG_PREFIX):
        owner, _, rest = ref[len(TAG_PREFIX):].partition("/")
        if rest:
            tags.setdefault(owner, []).append(ref)
    return _Listing(staging, found, sorted(n for n in names if is_agent_id(n)), tags)


def agents_table(store: Store) -> list[dict[str, Any]]:
    """A row per agent on staging or in production. Staging, the upstream and every tag
    are read once for the whole table; an agent's trees and configurations come from the
    process's caches by id (see store.Lru), so a second call reads almost nothing."""
    listing = _listing(store)
    rows = []
    for agent in listing.agents:
        version = versions_of(agent, listing.tags.get(agent, ())).latest
        try:
            rows.append(_agent_row(store, listing.staging, agent, version, listing.upstream))
        except InvalidConfig as exc:  # e.g. a link where the agent's directory should be
            rows.append({
                "agent": agent, "name": "(invalid)",
                "production": {"version": version or None,
                               "tag": f"{agent}/v{version}" if version else None,
                               "commit": None},
                "staging_differs": True, "retired": False, "problem": exc.message,
            })
    return rows


def in_production(store: Store) -> list[tuple[str, int]]:
    """(agent, version) of every agent in production (published, not retired), as
    `agents_table` shows them, without loading staging."""
    listing = _listing(store)
    out = []
    for agent in listing.agents:
        version = versions_of(agent, listing.tags.get(agent, ())).latest
        if not version:
            continue
        try:
            production = team_production(store, agent, version, listing.upstream)[0]
            retired = production is not None and store.agent_tree(production, agent) is None
        except InvalidConfig:  # listed, as agents_table lists it; reading it says why
            retired = False
        if not retired:
            out.append((agent, version))
    return out


def _agent_row(store: Store, staging: str, agent: str, version: int,
               upstream: tuple[str, str] | None) -> dict[str, Any]:
    production, _local, _remote = team_production(store, agent, version, upstream)
    live = production is not None and store.agent_tree(production, agent) is not None
    retired = production is not None and version > 0 and not live
    tree = store.agent_tree(staging, agent)
    name = ""
    if tree is not None:
        try:
            name = _load(store, staging, agent, tree, "")["name"]
        except AgentstageError:  # an invalid agent is listed all the same
            name = "(invalid)"
    return {
        "agent": agent,
        "name": name,
        "production": {"version": version or None,
                       "tag": f"{agent}/v{version}" if version else None,
                       "commit": production},
        "staging_differs": tree != store.agent_tree(production, agent),
        "retired": retired,
    }
