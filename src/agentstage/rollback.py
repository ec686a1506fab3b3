"""Revert and restore any past publish, on staging only, with a preview first.

Revert undoes the field changes one publish introduced (its tag against the
previous tag) by a three-way merge over fields: a field whose staging value is
still what that publish set goes back; one already back is left alone; one edited
since is a conflict. Restore sets the agent's directory back to the snapshot.
Neither touches production: that waits for the next publish.
"""

from __future__ import annotations

from typing import Any

from agentstage.agents import AgentState, agent_state, load_at, parse_tag
from agentstage.config import agent_dir, load_agent
from agentstage.edit import Edit, apply_edits
from agentstage.editing import commit_agent_files, field_changes
from agentstage.errors import Conflict, InvalidConfig, NotFound, NothingToPublish, Problem
from agentstage.fieldpath import parse_path
from agentstage.marks import RESTORE_TRAILER, REVERT_TRAILER
from agentstage.publishing import parse_record, read_record
from agentstage.semdiff import (
    MISSING,
    Change,
    diff_configs,
    is_order_change,
    same,
    undo_order,
    value_at,
)
from agentstage.store import TAG_PREFIX, Store, TagInfo


def _tag_info(store: Store, agent: str, text: str) -> tuple[TagInfo, int]:
    tag, version = parse_tag(agent, text)
    info = store.tag(tag)
    if info is None:
        raise NotFound(f"no publish {tag}",
                       hint=f"see the publishes with 'agentstage history {agent}'")
    return info, version


def plan_revert(store: Store, state: AgentState, info: TagInfo, version: int
                ) -> tuple[dict[str, bytes] | None, list[dict[str, Any]], bool]:
    """(new staging files or None to remove the agent, conflicts, anything to do)."""
    agent = state.agent
    before = load_at(store, _predecessor(store, agent, info, version), agent)
    after = load_at(store, info.target, agent)
    files = store.agent_files(state.staging, agent)
    cur = load_at(store, state.staging, agent)
    introduced = diff_configs(before, after)
    if before is None:  # the first publish created the agent: undoing it removes the agent
        if cur is None:
            return None, [], False
        changed = diff_configs(after, cur)
        return None, [_clash(c.path, MISSING,
                             MISSING if c.change == "added" else c.production,
                             MISSING if c.change == "removed" else c.staging)
                      for c in changed], True
    if files is None or cur is None:
        return None, [{"path": "(the agent was removed from staging)"}], True
    edits: list[Edit] = []
    conflicts: list[dict[str, Any]] = []
    for change in introduced:
        edit, clash = _undo(change, cur)
        if clash:
            conflicts.append(_clash(change.path, change.production if change.change != "added"
                                    else MISSING, change.staging if change.change != "removed"
                                    else MISSING, value_at(cur, change.path)))
        elif edit is not None:
            edits.append(edit)
    if conflicts or not edits:
        return files, conflicts, bool(edits)
    return _in_place(agent, apply_edits(files, edits), before, introduced), [], True


def _in_place(agent: str, files: dict[str, bytes], before: dict[str, Any],
              introduced: list[Change]) -> dict[str, bytes]:
    """An instruction the reverted publish removed goes back where it stood (after the
    instruction that came before it then), not to the end: their order is the prompt's."""
    back = {c.path for c in introduced if c.change == "removed" and c.section ==
            "instructions" and c.path.startswith("instructions[")}
    if not back:
        return files
    now = load_agent(agent, files).as_dict()["instructions"]
    by_id = {e["id"]: e for e in now}
    order = [e["id"] for e in now if f"instructions[{e['id']}]" not in back]
    earlier: list[str] = []
    for entry in before["instructions"]:
        ident = entry["id"]
        if f"instructions[{ident}]" in back and ident in by_id:
            after = next((i for i in reversed(earlier) if i in order), None)
            order.insert(order.index(after) + 1 if after is not None else 0, ident)
        earlier.append(ident)
    order += [i for i in by_id if i not in order]
    if order == [e["id"] for e in now]:
        return files
    return apply_edits(files, [Edit(parse_path("instructions"), [by_id[i] for i in order])])


def _predecessor(store: Store, agent: str, info: TagInfo, version: int) -> str | None:
    """The commit the publish *info* (version *version*) changed production from, as its
    own record names it: the previous tag's commit, else `production_before`; None when
    it was the first publish. Unknown here (a tag not fetched, a commit not in this
    repository) is NotFound: guessing "the first publish" would remove the agent."""
    _reason, record = read_record(info)
    previous, before = record.get("previous"), record.get("production_before")
    expected = f"{agent}/v{version - 1}" if version > 1 else None
    where = f"{TAG_PREFIX}{info.name}"
    if previous != expected or not (before is None or isinstance(before, str)):
        raise InvalidConfig([Problem(where, None, "", f"its publish record names "
                                     f"{previous!r} as the publish before it, expected "
                                     f"{expected!r}: not a record agentstage wrote")],
                            hint="see 'agentstage doctor'; revert by hand with agentstage set")
    if expected is None:
        return None
    found = store.tag(expected)
    if found is not None:
        return found.target
    if before is not None and store.object_kind(before) == "commit":
        return before
    raise NotFound(f"cannot revert {info.name}: the publish before it ({expected}) is not in "
                   "this repository, so what it changed is unknown (nothing was changed)",
                   hint="fetch the team's publishes: git fetch --tags (a shallow clone also "
                        "needs git fetch --unshallow)")


def _clash(path: str, before: Any, published: Any, now: Any) -> dict[str, Any]:
    """A conflict: the field, the value the publish set, the value staging has now, and the
    value the revert would have set (null, and a `*_absent` flag, where a side has no
    such field)."""
    out: dict[str, Any] = {"path": path}
    for key, value in (("published", published), ("staging", now), ("reverted_to", before)):
        out[key] = None if value is MISSING else value
        if value is MISSING:
            out[f"{key}_absent"] = True
    return out


def conflict_error(agent: str, tag: str, conflicts: list[dict[str, Any]]) -> Conflict:
    """The error of a revert that conflicts: each field with both values, and the way out:
    the snapshot of the publish before *tag*, never *tag* itself."""
    _name, version = parse_tag(agent, tag)
    lines = [f"cannot revert {tag}: staging has changed {len(conflicts)} field"
             f"{'s' if len(conflicts) != 1 else ''} since that publish"
             f" (nothing was applied):"]
    for clash in conflicts:
        path = _printable(str(clash["path"]))
        if "staging" not in clash:
            lines.append(f"  {path}")
            continue
        lines.append(f"  {path}: v{version} set {_shown(clash, 'published')}, "
                     f"staging now has {_shown(clash, 'staging')}")
    if version > 1:
        hint = (f"edit these fields by hand (agentstage set {agent} PATH=VALUE) and revert "
                f"again, or set staging back to the publish before it: "
                f"agentstage restore {agent} {agent}/v{version - 1}")
    else:
        hint = (f"{tag} is the agent's first publish, so there is no earlier snapshot to "
                f"restore: edit these fields by hand (agentstage set {agent} PATH=VALUE) back "
                "to what it published, then revert again")
    return Conflict("\n".join(lines), hint=hint,
                    payload={"agent": agent, "tag": tag, "reverted": False,
                             "conflicts": conflicts})


def _shown(clash: dict[str, Any], key: str) -> str:
    import json

    if clash.get(f"{key}_absent"):
        return "nothing (no such field)"
    text = _printable(json.dumps(clash.get(key), ensure_ascii=False))
    return text if len(text) <= 80 else text[:79] + "…"


def _printable(text: str) -> str:
    """*text* from the repository, safe on a terminal (the one escaping of escape.py)."""
    from agentstage.escape import terminal

    return terminal(text)


def _undo(change: Change, current: dict[str, Any]) -> tuple[Edit | None, bool]:
    """The edit that undoes *change* on *current*: (edit or None when already undone, clash)."""
    if is_order_change(change):  # the instructions' order: put the old order back
        entries, clash = undo_order(change, current)
        return (None if entries is None else Edit(parse_path(change.path), entries)), clash
    now = value_at(current, change.path)
    path = parse_path(change.path)
    if change.change == "added":
        if now is MISSING:
            return None, False
        return (Edit(path, remove=True), False) if same(now, change.staging) else (None, True)
    if change.change == "removed":
        if now is MISSING:
            return Edit(path, change.production), False
        return (None, False) if same(now, change.production) else (None, True)
    if now is MISSING:  # a field the publish modified, removed from staging since
        return None, True
    if same(now, change.production):
        return None, False
    if same(now, change.staging):
        return Edit(path, change.production), False
    return None, True


def _preview(store: Store, state: AgentState, tag: str, action: str,
             after: dict[str, bytes] | None, conflicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Two diffs (DESIGN.md: preview): staging now against after, and production now
    against production after the next publish. With conflicts nothing would happen."""
    agent = state.agent
    if after is not None:
        load_agent(agent, after)  # what staging would become must be valid

    def shape(commit: str | None, version: int | None) -> dict[str, Any]:
        files = store.agent_files(commit, agent)
        differs = not conflicts and files != after
        changes = field_changes(agent, files, after) if differs else []  # staging may be invalid
        return {"agent": agent, "has_changes": differs,
                "production": {"commit": commit, "version": version},
                "staging": {"commit": None}, "changes": [c.as_json() for c in changes]}

    staging_diff = shape(state.staging, None)
    production_diff = shape(state.production, state.version or None)
    return {"agent": agent, "tag": tag, "action": action, "staging": staging_diff,
            "production": production_diff, "conflicts": conflicts}


def revert(store: Store, agent: str, tag_text: str, preview: bool = False,
           message: str | None = None, author: str | None = None) -> dict[str, Any]:
    state = agent_state(store, agent)
    info, version = _tag_info(store, agent, tag_text)
    new_files, conflicts, todo = plan_revert(store, state, info, version)
    if preview:
        return _preview(store, state, info.name, "revert", new_files, conflicts)
    if conflicts:
        raise conflict_error(agent, info.name, conflicts)
    if not todo:
        raise NothingToPublish(
            f"the changes of {info.name} are already undone on staging",
            payload={"agent": agent, "tag": info.name, "reverted": False, "has_changes": False},
        )
    subject = f"Revert {info.name}: {parse_record(info)['reason']}".splitlines()[0]
    result = _commit(store, state, new_files, subject, message, REVERT_TRAILER + info.name,
                     author)
    return {**result, "tag": info.name, "reverted": True}


def _commit(store: Store, state: AgentState, new_files: dict[str, bytes] | None, subject: str,
            message: str | None, trailer: str, author: str | None) -> dict[str, Any]:
    """The revert or restore commit: subject, the user's why, and the trailer publish reads."""
    text = subject + (f"\n\n{message.strip()}" if message else "") + f"\n\n{trailer}\n"
    old_files = store.agent_files(state.staging, state.agent)
    return commit_agent_files(store, state.agent, old_files, new_files, text, author,
                              state.staging)


def restore(store: Store, agent: str, tag_text: str, preview: bool = False,
            message: str | None = None, author: str | None = None) -> dict[str, Any]:
    state = agent_state(store, agent)
    info, _version = _tag_info(store, agent, tag_text)
    snapshot = store.agent_files(info.target, agent)
    if preview:
        return _preview(store, state, info.name, "restore", snapshot, [])
    if store.agent_tree(info.target, agent) == store.agent_tree(state.staging, agent):
        raise NothingToPublish(
            f"staging's {agent_dir(agent)} is already the snapshot of {info.name}",
            payload={"agent": agent, "tag": info.name, "restored": False, "has_changes": False},
        )
    result = _commit(store, state, snapshot, f"Restore {agent} to {info.name}", message,
                     RESTORE_TRAILER + info.name, author)
    return {**result, "tag": info.name, "restored": True}
