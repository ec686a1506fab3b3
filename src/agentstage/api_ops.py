"""Operations the HTTP API needs beside the CLI's: edits computed from the agent as it is,
with an expected version (If-Match) and a bounded retry when staging moves under them;
creating an agent with its settings in one commit; delivery views of production; pages of
history. Each composes the operations and the store; none knows HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from agentstage.agents import agent_state, load_at, parse_tag, staging_head
from agentstage.edit import Edit, apply_edits
from agentstage.editing import agent_data, check_agent, commit_agent_files
from agentstage.errors import AgentstageError, Conflict, InvalidConfig, NotFound, UsageError
from agentstage.faults import pause_point
from agentstage.fieldpath import Entry, FieldPath, Key, render_path
from agentstage.ids import check_agent_id
from agentstage.layout import ENTRY_ID_PATTERN, agent_dir
from agentstage.semdiff import diff_configs
from agentstage.store import STAGING, Lru, Store

ATTEMPTS = 5  # a write that keeps losing races to unrelated changes gives up after these
T = TypeVar("T")
Plan = Callable[[Mapping[str, Any]], Sequence[Edit]]
# serve --remote: pushes staging, moved by a write from the given commit, before the write
# is acknowledged (replica.share); a push that lost a race leaves staging at the remote's
# and raises Conflict, so the write is planned again there
SHARE: ContextVar[Callable[[Store, str | None], None] | None] = ContextVar("share",
                                                                         default=None)


def _shared(store: Store, before: str | None) -> None:
    share = SHARE.get()
    if share is not None:
        share(store, before)


class PreconditionFailed(Conflict):
    """The agent changed on staging since the version the caller named (If-Match)."""


def etag(tree: str | None) -> str | None:
    return f'"{tree}"' if tree else None


def matches(header: str, tree: str | None) -> bool:
    """Whether an If-Match (or If-None-Match) value names the agent's tree."""
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return ("*" in tags and tree is not None) or etag(tree) in tags


def check_if_match(agent: str, if_match: str | None, tree: str | None) -> None:
    if if_match is not None and not matches(if_match, tree):
        raise PreconditionFailed(
            f"{agent} changed on staging since the version you named (If-Match); "
            "nothing was written",
            hint=f"read it again (GET /api/v2/agents/{agent}), then send the edit with its "
                 "new ETag")


def check_entry_id(kind: str, ident: str) -> None:
    import re

    if not re.fullmatch(ENTRY_ID_PATTERN, ident):
        raise UsageError(f"invalid {kind} id {ident!r}: letters, digits and _ . : -, "
                         "starting with a letter or digit, at most 128 characters")


def entry_path(section: str, ident: str, *rest: str | Entry) -> FieldPath:
    """The field path `section[ident].rest...`, refusing an id outside the entry grammar."""
    check_entry_id(section, ident)
    return (Key(section), Entry(ident), *(Key(r) if isinstance(r, str) else r for r in rest))


def staging_view(store: Store, agent: str) -> tuple[dict[str, Any], str | None]:
    """(the show shape of the agent on staging, its ETag)."""
    state = agent_state(store, agent)
    return _view_at(store, state.staging, agent)


def _view_at(store: Store, commit: str, agent: str) -> tuple[dict[str, Any], str | None]:
    config = load_at(store, commit, agent, "staging")
    if config is None:
        raise NotFound(f"no agent {agent!r} on staging",
                       hint=f"create it with POST /api/v2/agents {{\"id\": \"{agent}\", ...}}")
    return config, etag(store.agent_tree(commit, agent))


def _written(store: Store, result: dict[str, Any], agent: str) -> dict[str, Any]:
    """A write's answer: {"agent", "commit", "config", ...} and its ETag under "etag"."""
    commit = result.get("commit") or staging_head(store)
    files = store.agent_files(commit, agent)
    tree = store.agent_tree(commit, agent)
    loaded, _problems = check_agent(agent, files) if files is not None else (None, [])
    config = loaded.as_dict() if loaded is not None else agent_data(files)
    return {**result, "config": config, "etag": etag(tree)}


def check_values(edits: Sequence[Edit]) -> None:
    """Refuse, before any work, a JSON value the agent files cannot hold: nested deeper than
    the loader reads (its path counts), an integer outside 64 bits, or text that is not
    valid Unicode (a lone surrogate such as "\\ud800" is valid JSON but no UTF-8)."""
    from agentstage.yamlload import INT_MAX, INT_MIN, MAX_DEPTH

    for edit in edits:
        where = render_path(edit.path).encode("utf-8", "backslashreplace").decode()
        for part in edit.path:
            _check_text(part.name if isinstance(part, Key) else part.ident, where)
        todo: list[tuple[Any, int]] = [(edit.value, len(edit.path) + 1)]
        while todo:
            value, depth = todo.pop()
            if isinstance(value, (dict, list)):
                if depth >= MAX_DEPTH:
                    raise UsageError(f"the value of {where} is nested too deep: the agent "
                                     f"files hold at most {MAX_DEPTH} levels")
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for key, item in items:
                    if isinstance(key, str):
                        _check_text(key, where)
                    todo.append((item, depth + 1))
            elif isinstance(value, str):
                _check_text(value, where)
            elif isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
                raise UsageError(f"a number in the value of {where} is too large: integers "
                                 "must fit in 64 bits", hint="send it as a string")


def check_message(field: str, text: str | None) -> None:
    """A commit message or publish reason that git would not keep as sent: git ends a
    message at a NUL, so the rest (a publish's record) would be lost."""
    if text is not None and "\0" in text:
        raise UsageError(f"the {field} holds a NUL character (\\u0000), which git cannot keep "
                         "in a message", hint=f"send the {field} without it")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"the value of {where} is not valid Unicode text (a lone surrogate "
                         "such as \\ud800)", hint="send UTF-8 text") from None


def _touches(edit_paths: Sequence[str], change_paths: Sequence[str]) -> list[str]:
    """The edit paths that a change touches: the same field, one inside it or one around it."""
    def related(a: str, b: str) -> bool:
        return a == b or b.startswith((a + ".", a + "[")) or a.startswith((b + ".", b + "["))

    return [p for p in edit_paths if any(related(p, c) for c in change_paths)]


def edit_agent(store: Store, agent: str, plan: Plan, *, if_match: str | None = None,
               message: str | None = None, author: str | None = None,
               what: str | None = None) -> dict[str, Any]:
    """Apply the edits *plan* makes of the agent's staging configuration: one commit.

    When staging moves under the write (another agent, or other fields of this one), the
    plan is made again on the new staging and applied, at most ATTEMPTS times; when the
    move changed a field the edits touch, that is a Conflict. *if_match* must name the
    agent's staging version (else PreconditionFailed, nothing written)."""
    check_agent_id(agent)
    check_message("message", message)
    base: dict[str, Any] | None = None
    for _attempt in range(ATTEMPTS):
        state = agent_state(store, agent)
        files = store.agent_files(state.staging, agent)
        if files is None:
            raise NotFound(f"no agent {agent!r} on staging",
                           hint="list agents with GET /api/v2/agents")
        check_if_match(agent, if_match, store.agent_tree(state.staging, agent))
        current = agent_data(files) or {}
        edits = list(plan(current))
        paths = [render_path(e.path) for e in edits]
        if base is not None:
            moved = [c.path for c in diff_configs(base, current)]
            clash = _touches(paths, moved)
            if clash:
                raise Conflict(f"{agent}: {', '.join(clash)} changed on staging while this "
                               "edit was made; nothing was written",
                               hint="read the agent again and send the edit again")
        else:
            base = current
        if not edits:
            return _written(store, {"agent": agent, "commit": None, "changes": []}, agent)
        check_values(edits)
        try:
            new_files = apply_edits(files, edits)
        except InvalidConfig as exc:
            raise _located(agent, exc) from None
        if new_files == files:
            return _written(store, {"agent": agent, "commit": None, "changes": []}, agent)
        problems = check_agent(agent, new_files)[1]
        if problems:
            raise InvalidConfig(problems, hint="fix the values named above, then send the "
                                "request again")
        default = f"{agent}: {what}" if what else f"{agent}: " + ", ".join(
            ("unset " if e.remove else "set ") + p for e, p in zip(edits, paths, strict=True))
        text = (message or "").strip() or default.replace("\0", "\\0")  # values may hold NUL
        pause_point("api:edit-planned")  # a race test moves staging here
        try:
            result = commit_agent_files(store, agent, files, new_files, text, author,
                                        state.staging)
            _shared(store, state.staging)
        except Conflict:
            if store.ref(STAGING) == state.staging:
                raise
            continue
        return _written(store, result, agent)
    raise Conflict(f"staging kept moving while {agent} was edited; nothing was written",
                   hint="send the request again")


def _located(agent: str, exc: InvalidConfig) -> InvalidConfig:
    base = agent_dir(agent)
    problems = [p if "/" in p.file else p._replace(file=f"{base}/{p.file}")
                for p in exc.problems]
    return InvalidConfig(problems, hint=exc.hint)


def retrying(store: Store, write: Callable[[], T]) -> T:
    """Run *write* again when it lost a race: a Conflict while staging moved."""
    for attempt in range(ATTEMPTS):
        before = store.ref(STAGING)
        try:
            result = write()
            _shared(store, before)
            return result
        except Conflict:
            if store.ref(STAGING) == before or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


AGENT_TEMPLATE_MODEL = {"provider": "openai", "name": "gpt-4o", "temperature": 0.2}


def create_agent(store: Store, agent: str, fields: Mapping[str, Any],
                 message: str | None = None, author: str | None = None) -> dict[str, Any]:
    """A new agent on staging with *fields* of agent.yaml (name required): one commit,
    starting from `agentstage new`'s files, the given fields set over them."""
    from agentstage.editing import AGENT_TEMPLATE, INSTRUCTIONS_TEMPLATE

    check_agent_id(agent)
    check_message("message", message)
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError("a new agent needs a non-empty name", hint='send {"id": ..., '
                         '"name": "Support Bot"}')

    def write() -> dict[str, Any]:
        parent = staging_head(store)
        if store.agent_tree(parent, agent) is not None:
            raise Conflict(f"agent {agent!r} already exists on staging",
                           hint=f"edit it with PUT /api/v2/agents/{agent}")
        files = {"agent.yaml": AGENT_TEMPLATE.format(
                     agent=agent, name="placeholder", model="gpt-4o", provider="openai"
                 ).encode(),
                 "instructions.yaml": INSTRUCTIONS_TEMPLATE.format(
                     agent=agent, name=name.replace("\n", " ")).encode()}
        edits = [Edit((Key(key),), value) for key, value in fields.items() if value is not None]
        check_values(edits)
        try:
            files = apply_edits(files, edits)
        except InvalidConfig as exc:
            raise _located(agent, exc) from None
        text = (message or "").strip() or f"{agent}: new agent {name}".replace("\0", "\\0")
        return commit_agent_files(store, agent, None, files, text, author, parent)

    return _written(store, retrying(store, write), agent)


def rollback(store: Store, agent: str, action: str, change_track_id: str | int,
             reason: str | None = None, author: str | None = None,
             if_match: str | None = None) -> dict[str, Any]:
    """Revert or restore a publish on staging: {"agent", "tag", "action", "commit",
    "changes", "config"}."""
    from agentstage import rollback as ops

    tag = tag_of(agent, change_track_id)
    check_message("reason", reason)

    def write() -> dict[str, Any]:
        state = agent_state(store, agent)
        check_if_match(agent, if_match, store.agent_tree(state.staging, agent))
        done: dict[str, Any] = getattr(ops, action)(store, agent, tag, False, reason, author)
        return done

    result = retrying(store, write)
    return _written(store, {"agent": agent, "tag": result["tag"], "action": action,
                            "commit": result["commit"], "changes": result["changes"]}, agent)


def preview(store: Store, agent: str, action: str, change_track_id: str | int
            ) -> dict[str, Any]:
    from agentstage import rollback as ops

    result: dict[str, Any] = getattr(ops, action)(store, agent, tag_of(agent, change_track_id),
                                                  True)
    return result


def staging_diff(store: Store, agent: str) -> tuple[dict[str, Any], str | None]:
    """(the diff shape, the ETag of the staging it shows): publish with that ETag as
    If-Match publishes exactly what was reviewed."""
    from agentstage.publishing import diff_agent

    diff = diff_agent(store, agent)
    return diff, etag(store.agent_tree(diff["staging"]["commit"], agent))


def publish(store: Store, agent: str, reason: str, author: str | None = None,
            if_match: str | None = None) -> dict[str, Any]:
    """`agentstage publish`, refused (PreconditionFailed, nothing published) when the agent
    on staging is no longer the version *if_match* names."""
    from agentstage.publishing import publish as run

    check_agent_id(agent)  # before If-Match, whose refusal names the agent
    check_message("reason", reason)
    if if_match is not None:
        check_if_match(agent, if_match, store.agent_tree(staging_head(store), agent))
    result: dict[str, Any] = run(store, agent, reason, author)
    return result


def tag_of(agent: str, change_track_id: str | int) -> str:
    """A publish's tag from its change_track_id: N, vN or <agent>/vN."""
    check_agent_id(agent)
    text = str(change_track_id)
    if text.isascii() and text.isdigit():
        text = f"v{text}"
    return parse_tag(agent, text)[0]


def publish_entry(store: Store, agent: str, change_track_id: str | int) -> dict[str, Any]:
    """One publish as a history entry, read and checked as `history` reads every entry."""
    from agentstage.publishing import history

    tag = tag_of(agent, change_track_id)
    version = int(tag.rpartition("/v")[2])
    found = next((e for e in history(store, agent, limit=1, below=version + 1)
                  if e["tag"] == tag), None)
    if found is None:
        raise NotFound(f"no publish {tag}",
                       hint=f"see the publishes with GET /api/v2/agents/{agent}/publishes")
    return found


MAX_PAGE = 500


def history_page(store: Store, agent: str | None, author: str | None, since: str | None,
                 until: str | None, limit: int | None, cursor: str | None
                 ) -> dict[str, Any]:
    """{"publishes": entries newest first, "next_cursor": the tag to continue after, or
    None}. The cursor is the tag of the last entry of the previous page."""
    from agentstage.publishing import add_signatures, history, parse_when

    size = 50 if limit is None else limit
    if not 1 <= size <= MAX_PAGE:
        raise UsageError(f"limit must be 1 to {MAX_PAGE}, got {size}")
    for name, when in (("since", since), ("until", until)):
        try:
            if when:
                parse_when(when)
        except UsageError as exc:  # the same parse as history's, naming the parameter
            raise UsageError(f"{name}: {exc.message}", hint=exc.hint) from None
    if agent is not None:
        return _agent_history_page(store, agent, author, since, until, size, cursor)
    entries = history(store, agent, author, since, until, None, signatures=False)
    start = 0
    if cursor:
        found = next((n for n, e in enumerate(entries) if e["tag"] == cursor), None)
        if found is None:
            raise UsageError(f"unknown cursor {cursor!r}",
                             hint="pass the next_cursor of the previous page")
        start = found + 1
    page = add_signatures(store, entries[start:start + size])  # a subprocess each: the page's
    more = start + size < len(entries)
    return {"publishes": page, "next_cursor": page[-1]["tag"] if more and page else None}


def _agent_history_page(store: Store, agent: str, author: str | None, since: str | None,
                        until: str | None, size: int, cursor: str | None) -> dict[str, Any]:
    """A page of one agent's history: versions are contiguous, so the page after the cursor
    `<agent>/vN` starts at N-1; only the tags the page shows (and one more, to know whether
    a next page exists) are read and verified, unless filters skip some."""
    from agentstage.agents import VERSION_RE, latest_version
    from agentstage.publishing import history

    below = None
    if cursor:
        owner, _, rest = cursor.partition("/")
        number = int(rest[1:]) if VERSION_RE.fullmatch(rest) else 0
        if owner != agent or not 1 <= number <= latest_version(store, agent):
            raise UsageError(f"unknown cursor {cursor!r}",
                             hint="pass the next_cursor of the previous page")
        below = number
    entries = history(store, agent, author, since, until, size + 1, below)
    page = entries[:size]
    more = len(entries) > size
    return {"publishes": page, "next_cursor": page[-1]["tag"] if more and page else None}


def production_view(store: Store, agent: str) -> dict[str, Any]:
    """What runtimes read: {"agent", "version", "tag", "commit", "published_at", "config"}
    of the agent's newest publish; NotFound when never published or retired."""
    from agentstage.agents import show_config

    state = agent_state(store, agent)
    if not state.version or state.production is None:
        raise NotFound(f"{agent} has never been published",
                       hint=f"publish it with POST /api/v2/agents/{agent}/publish")
    if state.retired:
        show_config(store, agent, "production")  # says it was retired, and by which tag
    # the configuration of the tag itself, so the two always agree (ETag is the tag): a
    # publish writes its tag a moment before it moves production
    tag = f"{agent}/v{state.version}"
    config = show_config(store, agent, f"v{state.version}")
    info = store.tag(tag)
    return {"agent": agent, "version": state.version, "tag": tag,
            "commit": info.target if info is not None else state.production,
            "published_at": info.time.isoformat() if info is not None else None,
            "config": config}


def production_list(store: Store) -> list[dict[str, Any]]:
    """[{"agent", "version", "tag"}] of every agent in production."""
    from agentstage.agents import in_production

    return [{"agent": agent, "version": version, "tag": f"{agent}/v{version}"}
            for agent, version in in_production(store)]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: *patch* applied to *target* (neither is changed)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def entry_of(config: Mapping[str, Any], section: str, ident: str) -> dict[str, Any] | None:
    """The entry of a list section (or of a tool's actions: section "tools/ID") by its id."""
    key = "type" if section == "guardrails" else "id"
    if "/" in section:
        tool = entry_of(config, "tools", section.partition("/")[2])
        entries = tool.get("actions") if tool else None
    else:
        entries = config.get(section)
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get(key) == ident:
            return entry
    return None


# (agent, production tree, staging tree) -> how many fields differ: both trees are
# immutable, so the count is computed once per process (the agents page lists 100 a time).
_CHANGES: Lru[tuple[str, str | None, str | None], int] = Lru(50_000)


def _change_count(store: Store, agent: str) -> int:
    from agentstage.publishing import diff_state

    state = agent_state(store, agent)
    key = (agent, store.agent_tree(state.production, agent),
           store.agent_tree(state.staging, agent))
    count = _CHANGES.get(key)
    if count is None:
        count = len(diff_state(store, state)["changes"])
        _CHANGES.put(key, count)
    return count


def agent_overview(store: Store, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of `agents_table` with what the review page lists beside it: who published
    the newest version and when (`published_by`, `published_at`), how many fields staging
    changes (`changes`, None when not computed), and why an agent does not load
    (`problem`, None when it does)."""
    agent = str(row["agent"])
    production = row.get("production") or {}
    out: dict[str, Any] = {**row, "version": production.get("version"), "published_at": None,
                           "published_by": None, "changes": None,
                           "problem": row.get("problem")}
    tag = production.get("tag")
    try:
        info = store.tag(tag) if tag else None
    except AgentstageError as exc:
        info, out["problem"] = None, exc.message
    if info is not None:
        out["published_at"] = info.time.isoformat()
        out["published_by"] = {"name": info.tagger.name, "email": info.tagger.email}
    if out["problem"] is None and (row.get("staging_differs") or row.get("name") == "(invalid)"):
        try:
            out["changes"] = _change_count(store, agent)
        except InvalidConfig as exc:
            first = str(exc.problems[0]) if exc.problems else exc.message
            more = len(exc.problems) - 1
            out["problem"] = first + (f" (and {more} more)" if more > 0 else "")
        except AgentstageError as exc:
            out["problem"] = exc.message
    return out


__all__ = ["AgentstageError", "PreconditionFailed", "create_agent", "edit_agent", "etag",
           "history_page", "merge_patch", "preview", "production_list", "production_view",
           "publish_entry", "rollback", "staging_view", "tag_of"]


def approvals_view(store: Store, agent: str) -> dict[str, Any]:
    """`agentstage approvals`: what is approved of *agent*, by whom, current or void."""
    from agentstage.approvals import status

    return status(store, agent)


def approve(store: Store, agent: str, note: str | None, author: str) -> dict[str, Any]:
    """`agentstage approve`: the caller approves the agent's content staged now; then the
    approvals as `approvals_view` shows them, with the one written (or found) as
    "approval"."""
    from agentstage.approvals import approve as run
    from agentstage.approvals import status

    check_agent_id(agent)
    done = run(store, agent, note, author)  # a note with control characters: UsageError
    return {**status(store, agent), "approval": done["approval"], "created": done["created"]}


def publish_many(store: Store, agents: Sequence[tuple[str, str | None]], reason: str,
                 author: str | None = None, skip_unchanged: bool = False) -> dict[str, Any]:
    """`agentstage publish A B ...`: each (agent, If-Match or None), all or none; refused
    (PreconditionFailed, nothing published) when an agent on staging is no longer the
    version its If-Match names. {"release", "publishes", "skipped"}."""
    from agentstage.publishing import publish_many as run

    for agent, _if_match in agents:
        check_agent_id(agent)
    check_message("reason", reason)
    staging = staging_head(store)
    for agent, if_match in agents:
        if if_match is not None:
            check_if_match(agent, if_match, store.agent_tree(staging, agent))
    return run(store, [agent for agent, _if_match in agents], reason, author,
               skip_unchanged=skip_unchanged)
