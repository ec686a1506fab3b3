"""Diff, publish and history: staging against production, and the publish record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any

from agentstage.agents import (
    VERSION_RE,
    AgentState,
    agent_state,
    latest_version,
    load_at,
    resolve_identity,
)
from agentstage.errors import (
    Conflict,
    InvalidConfig,
    NotFound,
    NothingToPublish,
    Problem,
    UsageError,
    warn,
)
from agentstage.faults import crash_point
from agentstage.ids import check_agent_id, is_agent_id
from agentstage.semdiff import diff_configs
from agentstage.store import TAG_PREFIX, Identity, Store, TagInfo, production_ref, tag_ref

RECORD_MARKER = "agentstage-publish-record: 1"
REVERT_TRAILER = "Agentstage-Revert: "
RESTORE_TRAILER = "Agentstage-Restore: "


def diff_state(store: Store, state: AgentState) -> dict[str, Any]:
    """The diff shape of DESIGN.md: staging against production, field by field."""
    agent = state.agent
    old = load_at(store, state.production, agent, "production")
    new = load_at(store, state.staging, agent, "staging")
    changes = diff_configs(old.as_dict() if old else None, new.as_dict() if new else None)
    return {
        "agent": agent,
        "has_changes": store.agent_tree(state.production, agent)
        != store.agent_tree(state.staging, agent),
        "production": {"commit": state.production, "version": state.version or None},
        "staging": {"commit": state.staging},
        "changes": [c.as_json() for c in changes],
    }


def diff_agent(store: Store, agent: str) -> dict[str, Any]:
    return diff_state(store, agent_state(store, agent))


def diff_revs(store: Store, base: str, head: str, only: Sequence[str] = ()
              ) -> list[dict[str, Any]]:
    """Every agent (of *only*, if given) that differs between two commits, as diff shapes
    (for pull requests)."""
    old, new = store.resolve_commit(base), store.resolve_commit(head)
    out = []
    for agent in store.changed_agents(old, new):
        if only and agent not in only:
            continue
        a, b = load_at(store, old, agent, base), load_at(store, new, agent, head)
        changes = diff_configs(a.as_dict() if a else None, b.as_dict() if b else None)
        out.append({
            "agent": agent, "has_changes": True,
            "production": {"commit": old, "version": None}, "staging": {"commit": new},
            "changes": [c.as_json() for c in changes],
        })
    return out


def _pending(store: Store, agent: str, staging: str, production: str | None
             ) -> tuple[bool, dict[str, list[str]]]:
    """One walk of the staging history being published (the commits since production):
    whether production is an ancestor of staging, and this agent's reverts and restores
    in it. Production is an ancestor exactly when it is staging or a parent of one of
    those commits."""
    found: dict[str, list[str]] = {"reverts": [], "restores": []}
    if production is None:
        return True, found
    ancestor = production == staging
    for _oid, message, parents in store.walk(staging, production):
        ancestor = ancestor or production in parents
        for line in message.splitlines():
            for trailer, key in ((REVERT_TRAILER, "reverts"), (RESTORE_TRAILER, "restores")):
                if line.startswith(trailer):
                    tag = line[len(trailer):].strip()
                    if tag.startswith(agent + "/") and tag not in found[key]:
                        found[key].append(tag)
    return ancestor, found


def publish(store: Store, agent: str, reason: str, author: str | None = None,
            dry_run: bool = False) -> dict[str, Any]:
    """Make staging live for *agent*: production fast-forwards, a tag records it."""
    check_agent_id(agent)
    if not reason.strip():
        raise UsageError("a publish needs a reason", hint="pass -m 'why this goes live'")
    who = None if dry_run else resolve_identity(store, author)
    repaired = reconcile(store, agent, who) if who is not None else []
    state = agent_state(store, agent)
    if store.agent_tree(state.staging, agent) is None:
        raise NotFound(f"no agent {agent!r} on staging", hint="nothing to publish from staging")
    diff = diff_state(store, state)  # loads both sides: an invalid staging stops here (exit 4)
    if not diff["has_changes"]:
        for line in repaired:
            warn(line)
        raise NothingToPublish(
            f"{agent}: staging is identical to production (v{state.version}), nothing to publish",
            hint=f"change it first, e.g. agentstage set {agent} PATH=VALUE -m 'why'",
            payload={"agent": agent, "published": False, "has_changes": False},
        )
    fast_forward, marks = _pending(store, agent, state.staging, state.production)
    if not fast_forward:
        raise Conflict(
            f"{production_ref(agent)} is not an ancestor of staging: publishing would not be "
            "a fast-forward",
            hint="merge production into staging (git merge production/" + agent +
                 " on staging), then publish again",
        )
    version = state.version + 1
    tag = f"{agent}/v{version}"
    previous = f"{agent}/v{state.version}" if state.version else None
    result: dict[str, Any] = {
        "agent": agent, "published": not dry_run, "version": version, "tag": tag,
        "commit": state.staging, "previous": previous, "changes": diff["changes"],
        **marks,
    }
    if repaired:
        result["repaired"] = repaired
    if who is None:
        result["dry_run"] = True
        return result
    record = {
        "agent": agent, "version": version, "previous": previous,
        "staging_commit": state.staging, "production_before": state.production,
        **marks,
        "changes": diff["changes"],
    }
    message = f"{reason.strip()}\n\n{RECORD_MARKER}\n{json.dumps(record, sort_keys=True)}\n"
    tag_oid = store.write_tag(tag, state.staging, who, message)
    crash_point("publish:after-tag-object")
    # The tag first (production locked and checked, not moved), then production: a crash
    # in between leaves a tag ahead of production, which the next publish completes.
    prod = production_ref(agent)
    store.update_refs({tag_ref(agent, version): (None, tag_oid)}, f"agentstage publish {tag}",
                      who, expect={prod: state.production})
    crash_point("publish:after-tag")
    try:
        store.update_refs({prod: (state.production, state.staging)},
                          f"agentstage publish {tag}", who)
    except Conflict:
        if store.ref(prod) != state.staging:  # another command completed it for us: fine
            raise
    return result


def reconcile(store: Store, agent: str, who: Identity) -> list[str]:
    """Complete an interrupted publish: a newest tag ahead of production moves production
    to it. Returns what was repaired, for the command to say."""
    version = latest_version(store, agent)
    if version == 0:
        return []
    info = store.tag(f"{agent}/v{version}")
    production = store.ref(production_ref(agent))
    if info is None or production == info.target:
        return []
    if production is not None and not store.is_ancestor(production, info.target):
        return []  # production moved by other means: not an interrupted publish
    try:
        store.update_refs({production_ref(agent): (production, info.target)},
                          f"agentstage repair: complete publish {info.name}", who)
    except Conflict:
        return []  # someone else moved it meanwhile: nothing of ours to repair
    return [f"completed an interrupted publish: {production_ref(agent)} moved to "
            f"{info.name} ({info.target[:12]})"]


def parse_record(info: TagInfo) -> dict[str, Any]:
    """A publish tag as a history entry (DESIGN.md section 4)."""
    reason, marker, block = info.message.rpartition(f"\n\n{RECORD_MARKER}\n")
    if not marker:
        raise InvalidConfig([Problem(TAG_PREFIX + info.name, None, "",
                                     "tag has no agentstage publish record")],
                            hint="publish tags are written by 'agentstage publish' only")
    try:
        record = json.loads(block)
    except ValueError:
        raise InvalidConfig([Problem(TAG_PREFIX + info.name, None, "",
                                     "publish record is not valid JSON")]) from None
    return {
        "agent": record.get("agent"),
        "version": record.get("version"),
        "tag": info.name,
        "commit": info.target,
        "published_by": {"name": info.tagger.name, "email": info.tagger.email},
        "published_at": info.time.isoformat(),
        "reason": reason.strip(),
        "previous": record.get("previous"),
        "changes": record.get("changes", []),
        "reverts": record.get("reverts", []),
        "restores": record.get("restores", []),
        "staging_commit": record.get("staging_commit"),
    }


def parse_when(text: str, end_of_day: bool = False) -> datetime:
    """ISO date or datetime -> aware datetime (local time when no offset is given)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            when = datetime.combine(day, time.max if end_of_day else time.min)
        else:
            when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid date {text!r}",
                         hint="use an ISO date or datetime, e.g. 2026-11-23 or 2026-11-23T10:15") \
            from None
    return when if when.tzinfo else when.astimezone()


def history(store: Store, agent: str | None = None, author: str | None = None,
            since: str | None = None, until: str | None = None,
            limit: int | None = None) -> list[dict[str, Any]]:
    """Publishes, newest first, filtered by who (name or email) and when."""
    low = parse_when(since) if since else None
    high = parse_when(until, end_of_day=True) if until else None
    if limit is not None and limit < 0:
        raise UsageError("--limit must be 0 or more")
    needle = author.casefold() if author else None

    def keep(info: TagInfo) -> bool:
        if needle and needle not in info.tagger.name.casefold() \
                and needle not in info.tagger.email.casefold():
            return False
        if low and info.time < low:
            return False
        return not (high and info.time > high)

    if agent is not None:
        state = agent_state(store, agent)
        infos = (store.tag(f"{agent}/v{n}") for n in range(state.version, 0, -1))
    else:
        names = []
        for ref in store.refs(TAG_PREFIX):
            name = ref[len(TAG_PREFIX):]
            owner, _, v = name.partition("/")
            if is_agent_id(owner) and VERSION_RE.fullmatch(v):
                names.append(name)
        found = [store.tag(n) for n in names]
        infos = (i for i in sorted((i for i in found if i is not None),
                            key=lambda i: (i.time, int(i.name.rpartition("/v")[2])),
                            reverse=True))
    out: list[dict[str, Any]] = []
    for info in infos:
        if limit is not None and len(out) >= limit:
            break
        if info is None or not keep(info):
            continue
        out.append(parse_record(info))
    return out

