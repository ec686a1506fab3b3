"""Diff, publish and history: staging against production, and the publish record."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from time import sleep
from typing import TYPE_CHECKING, Any

from agentstage.agents import (
    AgentState,
    agent_state,
    latest_version,
    list_versions,
    load_at,
    resolve_identity,
    versions_of,
)
from agentstage.errors import (
    AgentstageError,
    Conflict,
    InvalidConfig,
    NotFound,
    NothingToPublish,
    Problem,
    UsageError,
    warn,
)
from agentstage.faults import crash_point, pause_point
from agentstage.ids import check_agent_id, is_agent_id
from agentstage.layout import agent_dir
from agentstage.semdiff import diff_configs
from agentstage.store import (
    STAGING,
    TAG_PREFIX,
    Identity,
    Store,
    TagInfo,
    production_ref,
    tag_ref,
)

if TYPE_CHECKING:
    from agentstage.remote import Upstream
    from agentstage.signing import SigningKey

RECORD_MARKER = "agentstage-publish-record: 1"


def diff_state(store: Store, state: AgentState) -> dict[str, Any]:
    """The diff shape of DESIGN.md: staging against production, field by field."""
    agent = state.agent
    old = load_at(store, state.production, agent, "production")
    new = load_at(store, state.staging, agent, "staging")
    changes = diff_configs(old, new)
    return {
        "agent": agent,
        "has_changes": store.agent_tree(state.production, agent)
        != store.agent_tree(state.staging, agent),
        "production": {"commit": state.production, "version": state.version or None},
        "staging": {"commit": state.staging},
        "changes": [c.as_json() for c in changes],
    }


def load_config(store: Store, commit: str | None, agent: str) -> dict[str, Any] | None:
    return load_at(store, commit, agent)


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
        changes = diff_configs(a, b)
        out.append({
            "agent": agent, "has_changes": True,
            "production": {"commit": old, "version": None}, "staging": {"commit": new},
            "changes": [c.as_json() for c in changes],
        })
    return out


def _pending(store: Store, agent: str, staging: str, production: str | None
             ) -> tuple[bool, dict[str, list[str]]]:
    """Whether production is an ancestor of staging, and this agent's reverts and restores
    between the two, each checked against the trees (see marks.py for how this avoids
    reading every commit since the last publish)."""
    found: dict[str, list[str]] = {"reverts": [], "restores": []}
    if production is None:
        return True, found
    from agentstage.marks import pending_marks  # the remote and marks: only when needed

    ancestor, marks = pending_marks(store, agent, staging, production)
    for mark in marks:
        if mark.tag not in found[mark.key] and _real_mark(
                store, agent, mark.commit, list(mark.parents), mark.key, mark.tag):
            found[mark.key].append(mark.tag)
    return ancestor, found


def _real_mark(store: Store, agent: str, commit: str, parents: list[str], key: str,
               tag: str) -> bool:
    """Whether a commit's revert or restore trailer (free text anyone can type) is what
    it says, checked against the trees: a restore holds the tag's snapshot of the agent; a
    revert of a first publish removes the agent, of a later one changes a file that
    publish changed."""
    try:
        info = store.tag(tag)
        if info is None:
            return False
        if key == "restores":
            return store.agent_tree(commit, agent) == store.agent_tree(info.target, agent)
        previous = read_record(info)[1].get("previous")
        before = store.tag(previous) if isinstance(previous, str) else None
        if previous is None:
            return store.agent_tree(commit, agent) is None
        if before is None:
            return False
        parent = parents[0] if parents else None
        was, now = store.agent_file_ids(parent, agent) or {}, \
            store.agent_file_ids(commit, agent) or {}
        old, new = store.agent_file_ids(before.target, agent) or {}, \
            store.agent_file_ids(info.target, agent) or {}
        touched = {f for f in was.keys() | now.keys() if was.get(f) != now.get(f)}
        return any(old.get(f) != new.get(f) for f in touched)
    except AgentstageError:
        return False


def publish(store: Store, agent: str, reason: str | None, author: str | None = None,
            dry_run: bool = False, *, push: str | None = None, local_only: bool = False,
            allow_empty: bool = False, retire: bool = False,
            sign: bool | None = None) -> dict[str, Any]:
    """Make staging live for *agent*: production fast-forwards, a tag records it.

    When staging tracks a remote, the remote is fetched first and a staging that is
    behind it or has diverged is refused; the publish is then pushed there (production,
    tag, and staging when it is ahead) in one atomic push, unless *local_only*. *push*
    names another remote to push to. With *retire* the agent leaves production: its
    directory is removed from staging (one commit) and that is published. *sign* (None:
    `git config agentstage.sign`) signs the tag as `git tag -s` does."""
    check_agent_id(agent)
    reason = _reason(reason, dry_run, retire)
    up, target, ahead = _fetch_first(store, push, local_only, dry_run)
    who = None if dry_run else resolve_identity(store, author)
    signer = _signing_key(store, who, reason, sign)  # a signing problem: before any write
    plan = _plan(store, agent, who, target, reason, retire=retire, allow_empty=allow_empty)
    ahead = ahead or (up is not None and plan.moved_staging)
    state, tag, version, result = plan.state, plan.tag, plan.version, plan.result
    if who is None:
        return result
    message = f"{reason}\n\n{RECORD_MARKER}\n{json.dumps(plan.record, sort_keys=True)}\n"
    tag_oid = store.write_tag(tag, state.staging, who, message, sign=None if signer is None
                              else lambda payload: _sign(signer, payload))
    crash_point("publish:after-tag-object")
    # The tag first (production locked and checked, not moved), then production: a crash
    # in between leaves a tag ahead of production, which the next publish completes.
    prod = production_ref(agent)
    store.update_refs({tag_ref(agent, version): (None, tag_oid)}, f"agentstage publish {tag}",
                      who, expect={prod: state.local})
    crash_point("publish:after-tag")
    _move_production(store, prod, state.local, state.staging, tag, who)
    if target is not None:
        from agentstage.remote import push_publish

        push_publish(store, target, agent, [tag], previous_production=state.local,
                     staging=ahead and target == state.remote, also=plan.approval_refs(store))
        result["pushed"] = target
        if ahead and target == state.remote:
            result["pushed_staging"] = True
    elif up is not None:
        result["local_only"] = True
        result["push_command"] = (f"git push --atomic {up.remote} {prod} refs/tags/{tag}"
                                  + (" staging" if ahead else ""))
    return result


def publish_many(store: Store, agents: Sequence[str], reason: str | None,
                 author: str | None = None, dry_run: bool = False, *,
                 push: str | None = None, local_only: bool = False,
                 allow_empty: bool = False, skip_unchanged: bool = False,
                 sign: bool | None = None) -> dict[str, Any]:
    """Publish several agents at once, all or none (a release): every agent is checked
    first (any refusal refuses all, naming the agent; with *skip_unchanged* an agent with
    nothing to publish is left out instead), then every tag is written in one ref
    transaction and every production ref in the next (the order of a single publish, so
    a crash between leaves tags ahead of production, which the next publish of any of
    them or `doctor --repair` completes), then one atomic push. Each record's "release"
    names every tag of the release. Returns {"release": [tags], "publishes": [publish
    shapes], "skipped": [agents]}."""
    if not agents:
        raise UsageError("name the agents to publish", hint="agentstage publish A B -m 'why'")
    for agent in agents:
        check_agent_id(agent)
    doubled = sorted({a for a in agents if list(agents).count(a) > 1})
    if doubled:
        raise UsageError(f"{', '.join(doubled)} named more than once",
                         hint="name each agent once")
    reason = _reason(reason, dry_run)
    up, target, ahead = _fetch_first(store, push, local_only, dry_run)
    who = None if dry_run else resolve_identity(store, author)
    signer = _signing_key(store, who, reason, sign)
    plans: list[_Plan] = []
    skipped: list[str] = []
    for agent in agents:
        try:
            plans.append(_plan(store, agent, who, target, reason, allow_empty=allow_empty))
        except NothingToPublish as exc:
            if skip_unchanged:
                skipped.append(agent)
                continue
            others = [a for a in agents if a != agent]
            raise NothingToPublish(
                f"{exc.message}: nothing of the release was published",
                hint=f"publish the others without it (agentstage publish {' '.join(others)} "
                     "-m ...), or pass --skip-unchanged" if others else exc.hint,
                payload={**(exc.payload or {}), "agents": list(agents)}) from None
    if not plans:
        raise NothingToPublish(f"{', '.join(agents)}: staging is identical to production "
                               "for every one, nothing to publish",
                               hint="change one first, e.g. agentstage set AGENT PATH=VALUE",
                               payload={"published": False, "has_changes": False,
                                        "release": [], "skipped": skipped})
    release = [p.tag for p in plans]
    out: dict[str, Any] = {"release": release, "publishes": [p.result for p in plans],
                           "skipped": skipped}
    if who is None:
        out["dry_run"] = True
        return out
    pause_point("publish:planned")  # a race test moves a production ref here
    tag_oids: dict[str, str] = {}
    for plan in plans:
        record = {**plan.record, "release": release}
        message = f"{reason}\n\n{RECORD_MARKER}\n{json.dumps(record, sort_keys=True)}\n"
        tag_oids[tag_ref(plan.state.agent, plan.version)] = store.write_tag(
            plan.tag, plan.state.staging, who, message,
            sign=None if signer is None else lambda payload: _sign(signer, payload))
    crash_point("publish:after-tag-object")
    label = f"agentstage publish {' '.join(release)}"
    store.update_refs({name: (None, oid) for name, oid in tag_oids.items()}, label, who,
                      expect={production_ref(p.state.agent): p.state.local for p in plans})
    crash_point("publish:after-tag")
    _move_productions(store, {production_ref(p.state.agent): (p.state.local, p.state.staging)
                              for p in plans}, label, who)
    staging = ahead and any(target == p.state.remote for p in plans)
    if target is not None:
        from agentstage.remote import push_release

        push_release(store, target, [(p.state.agent, p.tag, p.state.local) for p in plans],
                     staging=staging, also=[r for p in plans for r in p.approval_refs(store)])
        for result in out["publishes"]:
            result["pushed"] = target
        out["pushed"] = target
        if staging:
            out["pushed_staging"] = True
    elif up is not None:
        out["local_only"] = True
        out["push_command"] = (f"git push --atomic {up.remote} " + " ".join(
            f"{production_ref(p.state.agent)} refs/tags/{p.tag}" for p in plans)
            + (" staging" if ahead else ""))
    return out


def _reason(reason: str | None, dry_run: bool, retire: bool = False) -> str:
    reason = (reason or "").strip()
    if not reason and not dry_run:
        raise UsageError(f"a {'retire' if retire else 'publish'} needs a reason",
                         hint="pass -m 'why it leaves production'" if retire else
                         "pass -m 'why this goes live'")
    return reason


def _fetch_first(store: Store, push: str | None, local_only: bool, dry_run: bool
                 ) -> tuple[Upstream | None, str | None, bool]:
    """(the upstream, the remote to push to or None, whether staging is ahead of the
    upstream's): the remote fetched first, a staging behind it or diverged refused."""
    from agentstage.remote import check_staging_current, fetch, upstream

    up = upstream(store)
    target = push or (up.remote if up is not None and not local_only else None)
    ahead = False
    if up is not None:
        try:
            fetch(store, up.remote)
        except NotFound as exc:
            if target is not None and not dry_run:
                raise
            warn(f"{exc.message}; publishing from what this clone last fetched")
        ahead = check_staging_current(store, up)
    return up, target, ahead


@dataclass
class _Plan:
    """One agent's publish, checked and ready to write (or a dry run's answer)."""

    state: AgentState
    version: int
    tag: str
    approved: list[dict[str, Any]]
    result: dict[str, Any]
    record: dict[str, Any]
    moved_staging: bool = False  # a retire committed the agent's removal to staging

    def approval_refs(self, store: Store) -> list[str]:
        from agentstage.approvals import approval_ref

        tree = store.agent_tree(self.state.staging, self.state.agent) or ""
        return [approval_ref(self.state.agent, tree, a["id"]) for a in self.approved]


def _plan(store: Store, agent: str, who: Identity | None, target: str | None, reason: str,
          *, retire: bool = False, allow_empty: bool = False) -> _Plan:
    """Everything a publish of *agent* checks before it writes (an interrupted publish
    completed first): the refusals are raised, nothing of the publish is written (a retire
    has committed the agent's removal to staging)."""
    repaired = reconcile(store, agent, who) if who is not None else []
    state = agent_state(store, agent)
    start = state.staging
    _refuse_unverified(store, state)
    if target is not None and target == state.remote:
        _refuse_unpushed(store, state)
    if retire:
        state = _retire_on_staging(store, state, reason, who)
    elif store.agent_tree(state.staging, agent) is None:
        hint = (f"to take it out of production: agentstage retire {agent} -m 'why'"
                if state.in_production else "nothing to publish from staging")
        raise NotFound(f"no agent {agent!r} on staging", hint=hint)
    diff = diff_state(store, state)  # loads both sides: an invalid staging stops here (exit 4)
    if retire and who is None and state.in_production:  # a dry run: staging not changed yet
        diff = {**diff, "has_changes": True, "changes": [
            c.as_json() for c in diff_configs(
                load_config(store, state.production, agent), None)]}
    if not diff["has_changes"] or not (diff["changes"] or allow_empty):
        for line in repaired:
            warn(line)
        if not diff["has_changes"]:
            if state.retired:
                message = f"{agent} is already retired ({agent}/v{state.version})"
            else:
                message = (f"{agent}: staging is identical to production (v{state.version}), "
                           "nothing to publish")
            hint = f"change it first, e.g. agentstage set {agent} PATH=VALUE -m 'why'"
        else:
            message = (f"{agent}: staging differs from production only in comments or layout "
                       "(no field changes), nothing to publish")
            hint = "publish it anyway with --allow-empty"
        raise NothingToPublish(message, hint=hint,
                               payload={"agent": agent, "published": False, "has_changes": False})
    fast_forward, marks = _pending(store, agent, state.staging, state.production)
    if not fast_forward:
        raise Conflict(
            f"{production_ref(agent)} is not an ancestor of staging: publishing would not be "
            "a fast-forward",
            hint="merge production into staging (git merge production/" + agent +
                 " on staging), then publish again",
        )
    try:
        dirty = store.dirty_paths(agent_dir(agent))
    except (AgentstageError, OSError) as exc:  # a link, or another command writing it now:
        dirty = []                                # a publish reads only git
        warn(f"the checkout of {agent_dir(agent)} was not looked at: "
             f"{exc.message if isinstance(exc, AgentstageError) else exc}")
    if dirty:
        warn(f"uncommitted changes to {', '.join(dirty)} are not part of this publish: it "
             f"publishes staging's commit {state.staging[:12]} (commit them, then publish again)")
    version = state.version + 1
    tag = f"{agent}/v{version}"
    blockers = store.ref_names(f"{TAG_PREFIX}{tag}/") + store.ref_names(
        f"{production_ref(agent)}/")
    if blockers:
        raise Conflict(f"{', '.join(blockers)} block{'s' if len(blockers) == 1 else ''} the "
                       f"refs a publish of {tag} writes (git keeps refs as files and "
                       "directories)", hint="if nothing needs them, delete them: git update-ref "
                       f"-d {blockers[0]}; 'agentstage doctor' lists them")
    approved: list[dict[str, Any]] = []
    if who is not None and not retire:  # four eyes: refused (exit 7) short of approvals
        from agentstage.approvals import for_publish

        tree = store.agent_tree(state.staging, agent)
        approved = [a.as_record() for a in for_publish(store, agent, tree or "", who)]
    previous = f"{agent}/v{state.version}" if state.version else None
    result: dict[str, Any] = {
        "agent": agent, "published": who is not None, "version": version, "tag": tag,
        "commit": state.staging, "previous": previous, "changes": diff["changes"],
        **marks,
    }
    if retire:
        result["retired"] = True
    if approved:
        result["approvals"] = approved
    if repaired:
        result["repaired"] = repaired
    if who is None:
        result["dry_run"] = True
    record = {
        "agent": agent, "version": version, "previous": previous,
        "staging_commit": state.staging, "production_before": state.production,
        **marks,
        **({"retired": True} if retire else {}),
        **({"approvals": approved} if approved else {}),
        "changes": diff["changes"],
    }
    return _Plan(state, version, tag, approved, result, record,
                 moved_staging=state.staging != start)


def _signing_key(store: Store, who: Identity | None, reason: str, sign: bool | None
                 ) -> SigningKey | None:
    """The key to sign the publish tag with (None: unsigned), every problem found before
    anything is written."""
    from agentstage.signing import has_signature_line, signing_key, wants_signing

    if who is None:
        return None
    line = has_signature_line(reason)  # it would cut the record off the tag, signed or not
    if line is not None:
        raise UsageError(f"the reason has a line git reads as a signature: {line[:40]!r}",
                         hint="reword that line of the reason")
    return signing_key(store, who) if wants_signing(store, sign) else None


def _sign(key: SigningKey, payload: bytes) -> bytes:
    from agentstage.signing import sign

    return sign(key, payload)


def _move_production(store: Store, prod: str, old: str | None, new: str, tag: str,
                     who: Identity) -> None:
    _move_productions(store, {prod: (old, new)}, f"agentstage publish {tag}", who)


def _move_productions(store: Store, moves: dict[str, tuple[str | None, str]], message: str,
                      who: Identity) -> None:
    """Move production refs (in one ref transaction) to the commits their tags (already
    written) name. Another command may hold a production's lock for a moment (a publish
    checking it), or complete this publish first (the next publish does, before its own):
    production at our commit, or already past it, is that move done; a held lock is waited
    for, briefly."""
    pending = dict(moves)
    for attempt in range(50):
        try:
            store.update_refs(pending, message, who)
            return
        except Conflict:
            for prod, (old, new) in list(pending.items()):
                now = store.ref(prod)
                if now is not None and store.is_ancestor(new, now):
                    del pending[prod]
                elif now != old or attempt == 49:
                    raise
            if not pending:
                return
            sleep(0.02)


def retire(store: Store, agent: str, reason: str | None, author: str | None = None,
           dry_run: bool = False, *, push: str | None = None,
           local_only: bool = False) -> dict[str, Any]:
    """Take *agent* out of production: a final publish whose record says so."""
    return publish(store, agent, reason, author, dry_run, push=push, local_only=local_only,
                   retire=True)


def _retire_on_staging(store: Store, state: AgentState, reason: str,
                       who: Identity | None) -> AgentState:
    """Remove the agent from staging (one commit) unless it is gone already; a dry run
    changes nothing."""
    agent = state.agent
    if not state.in_production:
        raise NothingToPublish(
            f"{agent} is not in production: nothing to retire" + (
                f" (retired by {agent}/v{state.version})" if state.retired else ""),
            hint=f"remove it from staging with: git rm -r agents/{agent}" if
            store.agent_tree(state.staging, agent) is not None else None,
            payload={"agent": agent, "published": False, "has_changes": False})
    if who is None or store.agent_tree(state.staging, agent) is None:
        return state
    message = f"Retire {agent}: {reason}".splitlines()[0]
    commit = store.commit_agent(state.staging, agent, None, message, who)
    store.move_staging(state.staging, commit, agent_dir(agent), message, who)
    return state._replace(staging=commit)


def _refuse_unpushed(store: Store, state: AgentState) -> None:
    """A clone's publish that never reached the remote (--no-push, or a push that died):
    the next publish would fork the versions, so say how to push it first."""
    agent, remote = state.agent, state.remote
    if not state.version or remote is None:
        return
    tracking_name = store.remote_tracking(remote, production_ref(agent))
    newest = store.tag(f"{agent}/v{state.version}")
    if tracking_name is None or newest is None:
        return  # the remote's production is not fetched here: nothing to compare with
    tracking = store.ref(tracking_name)
    if tracking == newest.target or (
            tracking is not None and not store.is_ancestor(tracking, newest.target)):
        return
    unpushed = [f"{agent}/v{state.version}"]
    for n in range(state.version - 1, 0, -1):
        info = store.tag(f"{agent}/v{n}")
        if info is None or info.target == tracking:
            break
        unpushed.insert(0, f"{agent}/v{n}")
    tags = " ".join(f"refs/tags/{t}" for t in unpushed)
    raise Conflict(
        f"{', '.join(unpushed)} {'was' if len(unpushed) == 1 else 'were'} published in this "
        f"clone but never pushed to {remote}: publishing on top would fork the versions",
        hint=f"push it first: git push --atomic {remote} "
             f"{newest.target}:{production_ref(agent)} {tags}; then publish again")


def reconcile(store: Store, agent: str, who: Identity) -> list[str]:
    """Complete an interrupted publish: a newest tag ahead of production moves production
    to it, and so do the other tags of its release (a publish of several agents) left
    the same way, in one ref transaction. Returns what was repaired, for the command to
    say.

    In a clone, a missing local production ref, or one the team's publishes left behind,
    is not an interrupted publish: production is read from the tags there."""
    found = _interrupted(store, agent)
    if found is None:
        return []
    moves = {production_ref(agent): found}
    for name in _release(found[1]):
        other = name.partition("/v")[0]
        if other == agent or not is_agent_id(other):
            continue
        try:
            sibling = _interrupted(store, other)
        except AgentstageError:
            continue
        if sibling is not None and sibling[1].name == name:
            moves[production_ref(other)] = sibling
    try:
        store.update_refs({prod: (production, info.target)
                           for prod, (production, info) in moves.items()},
                          "agentstage repair: complete publish "
                          + " ".join(info.name for _p, info in moves.values()), who)
    except Conflict:
        return []  # someone else moved one meanwhile: nothing of ours to repair
    return [f"completed an interrupted publish: {prod} moved to {info.name} "
            f"({info.target[:12]})" for prod, (_p, info) in moves.items()]


def _release(info: TagInfo) -> list[str]:
    """The tags a publish record names as its release (empty for a single publish)."""
    try:
        return _released(read_record(info)[1])
    except AgentstageError:
        return []


def _released(record: dict[str, Any]) -> list[str]:
    named = record.get("release", [])
    return [n for n in named if isinstance(n, str)] if isinstance(named, list) else []


def _interrupted(store: Store, agent: str) -> tuple[str | None, TagInfo] | None:
    """(production, the newest tag) when the agent's newest publish tag is ahead of its
    production and verifies (an interrupted publish); None otherwise."""
    version = latest_version(store, agent)
    if version == 0:
        return None
    info = store.tag(f"{agent}/v{version}")
    production = store.ref(production_ref(agent))
    if info is None or production == info.target:
        return None
    found = store.upstream(STAGING)
    if found is not None and (production is None or store.remote_ref(
            found[0], production_ref(agent)) == info.target):
        return None
    if production is not None and not store.is_ancestor(production, info.target):
        return None  # production moved by other means: not an interrupted publish
    if unverified(store, info):
        return None  # not a publish agentstage made: never applied (publish and doctor say so)
    return production, info


def unverified(store: Store, info: TagInfo) -> list[str]:
    """Why publish tag *info* is not one agentstage made, fully checked (record against the
    repository, configuration valid, commit on staging); empty when it is."""
    from agentstage.verify import record_problems

    try:
        problems = record_problems(store, info, read_record(info)[1], deep=True)
    except AgentstageError as exc:
        return [exc.message]
    staging = store.ref(STAGING)
    if staging is not None and not store.is_ancestor(info.target, staging):
        problems.append("its commit is not on staging")
    return problems


def _refuse_unverified(store: Store, state: AgentState) -> None:
    """A newest tag left ahead of production that does not verify (fetched from elsewhere,
    or forged): publishing on top of it would carry it into the history."""
    if not state.version or state.remote is not None:
        return
    info = store.tag(f"{state.agent}/v{state.version}")
    if info is None or info.target == state.production:
        return
    problems = unverified(store, info)
    if problems:
        raise Conflict(
            f"{info.name} is not a publish agentstage made, and production was not moved to "
            f"it: {'; '.join(problems)}",
            hint=f"if it came from elsewhere, delete it (git tag -d {info.name}); "
                 "'agentstage doctor' lists what else does not verify")


MAX_RECORD_CHARS = 256 * 1024
MAX_RECORD_DEPTH = 20


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest, counted without parsing (so a
    hostile record cannot exhaust the parser's recursion). Strings are cut out first
    (an unterminated one runs to the end), then only the brackets are walked."""
    bare = _JSON_STRING.sub("", text)
    bare = bare[:bare.find('"')] if '"' in bare else bare
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", bare):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_record(info: TagInfo) -> dict[str, Any]:
    """A publish tag as a history entry (DESIGN.md section 4)."""
    return _entry(info, *read_record(info))


def _entry(info: TagInfo, reason: str, record: dict[str, Any]) -> dict[str, Any]:
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
        "retired": bool(record.get("retired", False)),
        "approvals": record.get("approvals", []),
        "release": _released(record),
    }


def read_record(info: TagInfo) -> tuple[str, dict[str, Any]]:
    """(reason, record) of a publish tag: the JSON block after the marker, parsed with a
    bounded size and depth into an object (anything else is an InvalidConfig naming the
    tag). The record as written, for what the history entry does not show
    (`production_before`)."""
    from agentstage.signing import strip_signature

    message = strip_signature(info.message) if "-----BEGIN " in info.message else info.message
    reason, marker, block = message.rpartition(f"\n\n{RECORD_MARKER}\n")
    if not marker:
        raise InvalidConfig([Problem(TAG_PREFIX + info.name, None, "",
                                     "tag has no agentstage publish record")],
                            hint="publish tags are written by 'agentstage publish' only")
    where = TAG_PREFIX + info.name
    if len(block) > MAX_RECORD_CHARS or _json_depth(block) > MAX_RECORD_DEPTH:
        raise InvalidConfig([Problem(where, None, "", f"publish record is over the cap of "
                                     f"{MAX_RECORD_CHARS} characters or nested deeper than "
                                     f"{MAX_RECORD_DEPTH}")])
    try:
        record = json.loads(block)
    except ValueError:
        raise InvalidConfig([Problem(where, None, "",
                                     "publish record is not valid JSON")]) from None
    if not isinstance(record, dict) or not isinstance(record.get("changes", []), list):
        raise InvalidConfig([Problem(where, None, "", "publish record is not a JSON object "
                                     "with a list of changes")])
    return reason, record


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
            limit: int | None = None, below: int | None = None,
            signatures: bool = True) -> list[dict[str, Any]]:
    """Publishes, newest first, filtered by who (name or email) and when; for one agent,
    *below* starts at the version under that number. Tags are read newest first and only
    until *limit* entries are kept, so a page of one agent's history costs its page.
    Without *signatures* the entries have no signature yet: a caller that shows a page of
    them adds it to that page (add_signatures), since each check costs a subprocess."""
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

    def read(names: Iterable[str]) -> Iterator[TagInfo]:
        for name in names:
            try:
                info = store.tag(name)
            except AgentstageError as exc:  # one bad tag is reported, the rest shown
                warn(f"{exc.message} (skipped)")
                continue
            if info is not None:
                yield info

    # the versions are listed from the refs that exist (one namespace for one agent),
    # never counted up to a number read from a ref name; what is not a version is said
    if agent is not None:
        # no such agent: NotFound; a bad newest tag is reported below, the rest shown
        with contextlib.suppress(InvalidConfig):
            agent_state(store, agent)
        versions = [list_versions(store, agent)]
    else:
        by_agent: dict[str, list[str]] = {}
        for ref in store.refs(TAG_PREFIX):
            owner, _, rest = ref[len(TAG_PREFIX):].partition("/")
            if is_agent_id(owner) and rest:
                by_agent.setdefault(owner, []).append(ref)
        versions = [versions_of(owner, refs) for owner, refs in sorted(by_agent.items())]
    for listed in versions:
        skipped = listed.skipped()
        if skipped:
            warn(skipped)
    names = [f"{v.agent}/v{n}" for v in versions
             for n in range(v.latest if below is None else min(v.latest, below - 1), 0, -1)]
    if agent is not None:
        infos: Iterator[TagInfo] = read(names)
    else:
        infos = iter(sorted(read(names), key=lambda i: (
            i.time, int(i.name.rpartition("/v")[2])), reverse=True))
    from agentstage.pushlog import Pushers
    from agentstage.verify import record_problems

    pushers = Pushers(store)
    out: list[dict[str, Any]] = []
    for info in infos:
        if limit is not None and len(out) >= limit:
            break
        if info is None or not keep(info):
            continue
        try:
            reason, record = read_record(info)
            entry = _entry(info, reason, record)
            problems = record_problems(store, info, record)
        except AgentstageError as exc:  # one unreadable record is reported, the rest shown
            warn(f"{exc.message} (skipped)")
            continue
        entry["verified"], entry["problems"] = not problems, problems
        # who the server authenticated for this push (its post-receive note), when known
        pushed = pushers.of(store.ref(TAG_PREFIX + info.name))
        entry["pushed_by"] = pushed["by"] if pushed else None
        entry["pushed_at"] = pushed["at"] if pushed else None
        out.append(entry)
    return add_signatures(store, out) if signatures else out


def add_signatures(store: Store, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entry's "signature": signed, by whom, and whether it verifies against the
    signers this machine knows (signing.py; checks are cached by tag object id)."""
    from agentstage.signing import Checker

    checker = Checker.for_history(store)
    for entry in entries:
        entry["signature"] = checker.check(store.ref(TAG_PREFIX + str(entry["tag"])))
    return entries

