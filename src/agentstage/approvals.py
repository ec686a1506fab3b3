"""Approvals (four eyes): someone other than the publisher approves an agent's exact staged
content before it may go live.

An approval is an annotated tag object that points at the tree of `agents/<agent>` it
approves (the tagger is the approver, the tagger time when), kept by the ref
`refs/meta/agentstage-approvals/<agent>/<tree>/<approval id>`. The ref name says what was
approved and the object proves it; a later change to the agent is a different tree, which
no approval names: the old ones are void, and stay as the audit trail. One ref per approval
means two approvers never race for one ref, so approvals travel with a plain
`git push`/`git fetch` of that namespace (agentstage's fetch and publish do it), and the
server hook checks every one: created once, never moved or deleted, by an approver the
policy allows, tagged with the pusher's own email when the policy maps users to emails.

Who may approve: whoever may publish the agent (its publishers and the admins), never
toward their own publish: the publisher's email, and every email the policy's users give
the same person, do not count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from agentstage.errors import (
    AgentstageError,
    InvalidConfig,
    NotFound,
    PolicyDenied,
    Problem,
    UsageError,
)
from agentstage.ids import check_agent_id, is_agent_id
from agentstage.store import Identity, Store

PREFIX = "refs/meta/agentstage-approvals/"
MARKER = "agentstage-approval: 1"
TAG_NAME = "agentstage-approval"
MAX_NOTE = 2000
MAX_MESSAGE = 16 * 1024
_OID = r"[0-9a-f]{40}(?:[0-9a-f]{24})?"
REF_RE = re.compile(rf"{re.escape(PREFIX)}([^/]+)/({_OID})/({_OID})")


class Approval(NamedTuple):
    id: str  # the tag object's id
    agent: str
    tree: str  # the tree of agents/<agent> approved
    approver: str
    email: str
    time: datetime
    note: str

    def as_json(self, current: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tree": self.tree, "approver": self.approver,
                               "email": self.email, "time": self.time.isoformat(),
                               "note": self.note}
        if current is not None:
            out["current"] = self.tree == current
        return out

    def as_record(self) -> dict[str, Any]:
        """What a publish record lists of it."""
        return {"approver": self.approver, "email": self.email,
                "time": self.time.isoformat(), "id": self.id}


def approval_ref(agent: str, tree: str, oid: str) -> str:
    return f"{PREFIX}{agent}/{tree}/{oid}"


def required(policy: Any, agent: str) -> int:
    """How many approvals a publish of *agent* needs under *policy* (None: no policy)."""
    if policy is None:
        return 0
    counts: Mapping[str, int] = policy.approvals
    return counts.get(agent, counts.get("*", 0))


def approvers(policy: Any, agent: str) -> list[str]:
    """Who may approve *agent* (its publishers and the admins), for messages."""
    if policy is None:
        return ["anyone but the publisher (no policy)"]
    names = {*policy.publishers.get(agent, []), *policy.publishers.get("*", []),
             *policy.admins}
    return sorted(names) or ["nobody (the policy names no publisher of it)"]


def may_approve(policy: Any, who: str | None, agent: str) -> bool:
    return policy is None or bool(policy.is_publisher(who, agent) or policy.is_admin(who))


def same_person(policy: Any, email: str, pusher: str | None = None) -> set[str]:
    """The emails (casefolded) that are the person with *email* (and the pusher *pusher*):
    those approvals do not count toward that person's publish."""
    out = {email.casefold()}
    users: Mapping[str, list[str]] = policy.users if policy is not None else {}
    for name, emails in users.items():
        folded = {e.casefold() for e in emails}
        if email.casefold() in folded or name == pusher:
            out |= folded
    return out


# -- reading -------------------------------------------------------------------------------


def read_approval(store: Store, agent: str, tree: str, oid: str) -> Approval:
    """The approval object *oid*, checked against the ref that names it (agent, tree);
    InvalidConfig naming what is wrong."""
    where = approval_ref(agent, tree, oid)

    def bad(problem: str) -> InvalidConfig:
        return InvalidConfig([Problem(where, None, "", problem)],
                             hint="approvals are written by 'agentstage approve' only")

    info = store.tag_object(oid)
    if info is None:
        raise bad("is not an annotated tag (or is not in this repository)")
    if info.target != tree or store.object_kind(tree) != "tree":
        raise bad("does not point at the tree its ref names")
    _, marker, block = info.message.rpartition(f"\n{MARKER}\n")
    if not marker or len(info.message) > MAX_MESSAGE:
        raise bad("has no agentstage approval record")
    try:
        data = json.loads(block)
    except ValueError:
        raise bad("its approval record is not valid JSON") from None
    if not isinstance(data, dict) or data.get("agent") != agent:
        raise bad(f"its approval record does not name the agent {agent}")
    note = data.get("note", "")
    return Approval(oid, agent, tree, info.tagger.name, info.tagger.email, info.time,
                    note if isinstance(note, str) else "")


def approvals_of(store: Store, agent: str, tree: str | None = None,
                 problems: list[str] | None = None) -> list[Approval]:
    """The agent's approvals (of *tree* only, when given), oldest first. One that does not
    read is left out, and said in *problems*."""
    prefix = f"{PREFIX}{agent}/" + (f"{tree}/" if tree else "")
    found = []
    for ref in store.ref_names(prefix):  # that directory of refs, not every ref
        match = REF_RE.fullmatch(ref)
        if match is None or match[1] != agent or store.ref(ref) != match[3]:
            if problems is not None:
                problems.append(f"{ref}: not an approval ref (its name is not "
                                f"{PREFIX}<agent>/<tree>/<approval id>)")
            continue
        try:
            found.append(read_approval(store, agent, match[2], match[3]))
        except AgentstageError as exc:
            if problems is not None:
                problems.append(exc.message)
    return sorted(found, key=lambda a: (a.time, a.id))


def counted(found: Sequence[Approval], tree: str, excluded: set[str]) -> list[Approval]:
    """The approvals of *tree* that count: one per person (the first), nobody of
    *excluded* (the publisher)."""
    out: list[Approval] = []
    seen = set(excluded)
    for approval in found:
        if approval.tree == tree and approval.email.casefold() not in seen:
            seen.add(approval.email.casefold())
            out.append(approval)
    return out


def _policy(store: Store) -> Any:
    from agentstage.meta import read_policy

    return read_policy(store)


def _staged(store: Store, agent: str) -> tuple[str, str]:
    """(staging's commit, the tree of agents/<agent> there)."""
    from agentstage.agents import staging_head

    staging = staging_head(store)
    tree = store.agent_tree(staging, agent)
    if tree is None:
        raise NotFound(f"no agent {agent!r} on staging",
                       hint="approvals are of an agent's staged content")
    return staging, tree


def status(store: Store, agent: str) -> dict[str, Any]:
    """What is approved of *agent*, by whom, and whether it is the content staged now."""
    check_agent_id(agent)
    staging, tree = _staged(store, agent)
    problems: list[str] = []
    found = approvals_of(store, agent, problems=problems)
    policy = _policy(store)
    current = counted(found, tree, set())
    return {
        "agent": agent,
        "staging": {"commit": staging, "tree": tree},
        "required": required(policy, agent),
        "approved_by": [{"approver": a.approver, "email": a.email} for a in current],
        "who_may_approve": approvers(policy, agent),
        "approvals": [a.as_json(tree) for a in reversed(found)],
        "problems": problems,
    }


# -- writing -------------------------------------------------------------------------------


def approve(store: Store, agent: str, note: str | None = None, author: str | None = None,
            *, push: str | None = None, local_only: bool = False) -> dict[str, Any]:
    """Approve the agent's content staged now: an approval object and its ref (a
    compare-and-swap creation). When staging tracks a remote, the remote is fetched first
    (a staging behind it or diverged is refused, as for a publish) and the approval is
    pushed there, unless *local_only*; *push* names another remote. A refused push takes
    the approval back (exit 7 with the server's reason)."""
    from agentstage.agents import load_at, resolve_identity
    from agentstage.errors import warn
    from agentstage.remote import check_staging_current, fetch, push_refs, upstream

    check_agent_id(agent)
    note = (note or "").strip()
    if len(note) > MAX_NOTE or any(ord(c) < 32 and c not in "\n\t" for c in note):
        raise UsageError(f"an approval's note is text of at most {MAX_NOTE} characters, "
                         "without control characters")
    up = upstream(store)
    target = push or (up.remote if up is not None and not local_only else None)
    if up is not None:
        try:
            fetch(store, up.remote)
        except NotFound as exc:
            if target is not None:
                raise
            warn(f"{exc.message}; approving what this clone last fetched")
        check_staging_current(store, up)
    who = resolve_identity(store, author)
    staging, tree = _staged(store, agent)
    load_at(store, staging, agent, "staging")  # an invalid configuration is not approved
    mine = [a for a in approvals_of(store, agent, tree)
            if a.email.casefold() == who.email.casefold()]
    result: dict[str, Any] = {"agent": agent, "staging": {"commit": staging, "tree": tree}}
    if mine:
        approval, created = mine[0], False
    else:
        approval, created = _write(store, agent, tree, staging, who, note), True
    ref = approval_ref(agent, tree, approval.id)
    result.update(approval=approval.as_json(tree), ref=ref, created=created)
    if target is not None:
        try:
            push_refs(store, target, [ref], what=f"the approval of {agent}")
        except AgentstageError:
            if created:
                store.update_refs({ref: (approval.id, None)},
                                  f"agentstage approve: {target} refused, taken back")
            raise
        result["pushed"] = target
    elif up is not None:
        result["local_only"] = True
        result["push_command"] = f"git push {up.remote} {ref}"
    return result


def _write(store: Store, agent: str, tree: str, staging: str, who: Identity,
           note: str) -> Approval:
    record = {"agent": agent, "staging_commit": staging, "note": note}
    message = (f"Approve {agent} ({tree[:12]})\n\n" + (f"{note}\n\n" if note else "")
               + f"{MARKER}\n{json.dumps(record, sort_keys=True)}\n")
    oid = store.write_tree_tag(TAG_NAME, tree, who, message)
    store.update_refs({approval_ref(agent, tree, oid): (None, oid)},
                      f"agentstage approve {agent}", who)
    return read_approval(store, agent, tree, oid)


# -- publishing: the check, and the record's list --------------------------------------------


def for_publish(store: Store, agent: str, tree: str, who: Identity) -> list[Approval]:
    """The approvals a publish of *tree* by *who* lists in its record (every current one
    of another person); PolicyDenied when the policy requires more."""
    policy = _policy(store)
    found = counted(approvals_of(store, agent, tree), tree, same_person(policy, who.email))
    need = required(policy, agent)
    if len(found) < need:
        raise PolicyDenied(
            f"{agent} needs {need} approval{'s' if need != 1 else ''} of its staged content "
            f"by someone other than the publisher, and has {len(found)}"
            + (f" ({', '.join(a.approver for a in found)})" if found else ""),
            hint=f"who may approve: {', '.join(approvers(policy, agent))}; they run "
                 f"'agentstage approve {agent}' (or use the review page); any change to "
                 f"{agent} after an approval voids it")
    return found


def record_problems(store: Store, agent: str, commit: str, listed: Any,
                    deep: bool = False) -> list[str]:
    """What a publish record's `approvals` claim that the repository does not show: each
    must be an approval of the published tree with the same approver, email and time. An
    approval not in this repository (not fetched) is a problem only when *deep*."""
    if listed is None:
        return []
    if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
        return ["the record's approvals are not a list of approvals"]
    try:
        tree = store.agent_tree(commit, agent)
    except AgentstageError as exc:
        return [f"the published tree cannot be read: {exc.message}"]
    problems = []
    for entry in listed:
        oid = entry.get("id")
        if not isinstance(oid, str) or not re.fullmatch(_OID, oid) or tree is None:
            problems.append(f"the record lists an approval without a valid id: {entry!r:.80}")
            continue
        if store.object_kind(oid) is None:
            if deep:
                problems.append(f"the approval {oid[:12]} by {entry.get('email')} is not in "
                                f"this repository (git fetch REMOTE '{PREFIX}*:{PREFIX}*')")
            continue
        try:
            approval = read_approval(store, agent, tree, oid)
        except InvalidConfig as exc:
            problems.append(f"the record lists approval {oid[:12]}, which is not an "
                            f"approval of the published {agent}: {exc.problems[0].message}")
            continue
        shown = approval.as_record()
        if any(entry.get(k) != shown[k] for k in ("approver", "email", "time")):
            problems.append(f"the record's approval {oid[:12]} names another approver or "
                            "time than the approval itself")
    return problems


# -- the server hook ---------------------------------------------------------------------


def ref_refusal(store: Store, ref: str, old: str | None, new: str | None, policy: Any,
                who: str | None) -> str | None:
    """Why the push of approval ref *ref* is refused (None: accepted)."""
    match = REF_RE.fullmatch(ref)
    if match is None or not is_agent_id(match[1]):
        return (f"{PREFIX} holds only approvals, as {PREFIX}<agent>/<tree>/<approval id> "
                "(agentstage approve writes them)")
    agent, tree, oid = match[1], match[2], match[3]
    if new is None:
        return "approvals are never deleted: they are the audit trail"
    if old is not None:
        return "approvals are never moved: they are the audit trail"
    if new != oid:
        return "an approval ref points at the approval its name gives"
    try:
        approval = read_approval(store, agent, tree, oid)
    except InvalidConfig as exc:
        return f"not an approval: {exc.problems[0].message}"
    if not may_approve(policy, who, agent):
        return (f"{who} may not approve {agent}: approvers are those who may publish it "
                f"({', '.join(approvers(policy, agent))})")
    if policy is not None and policy.users:
        mine = policy.users.get(who or "", [])
        if approval.email.casefold() not in (e.casefold() for e in mine):
            return (f"the approval is by {approval.email}, and {who} is "
                    f"{', '.join(mine) or 'not in the policy users'}: only approvers push "
                    "their own approvals (agentstage approve pushes it)")
    return None


def publish_refusal(store: Store, policy: Any, agent: str, commit: str, tagger: str,
                    record: Mapping[str, Any], who: str | None,
                    pushed: Mapping[str, str | None]) -> str | None:
    """Why a publish of *commit* (its tag by *tagger*, pushed by *who*) lacks the approvals
    the policy requires: the approvals its record lists must be on the server (or in this
    push, *pushed*: ref -> new id), approve the published tree, and be of enough people
    other than the publisher. None: enough."""
    need = required(policy, agent)
    if need == 0 or record.get("retired") is True:
        return None
    tree = store.agent_tree(commit, agent)
    listed = record.get("approvals", [])
    if tree is None or not isinstance(listed, list):
        return "its record's approvals are not a list"
    valid = []
    for entry in listed:
        oid = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(oid, str) or not re.fullmatch(_OID, oid):
            return "its record lists an approval without an id"
        ref = approval_ref(agent, tree, oid)
        if (pushed[ref] if ref in pushed else store.ref(ref)) != oid:
            return (f"its record lists approval {oid[:12]} by {entry.get('email')}, which is "
                    f"not on the server as {ref}: push it with the publish")
        try:
            valid.append(read_approval(store, agent, tree, oid))
        except InvalidConfig as exc:
            return f"its record lists approval {oid[:12]}: {exc.problems[0].message}"
    problems = record_problems(store, agent, commit, listed, deep=True)
    if problems:
        return "; ".join(problems)
    found = counted(valid, tree, same_person(policy, tagger, who))
    if len(found) >= need:
        return None
    return (f"{agent} needs {need} approval{'s' if need != 1 else ''} of the published content "
            f"by someone other than the publisher, and has {len(found)}; who may approve: "
            f"{', '.join(approvers(policy, agent))} (agentstage approve {agent})")
