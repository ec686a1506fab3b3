"""Agents and their staging edits (the seed's endpoints that need a follow-up publish).

Each route names the field paths it changes (DESIGN.md section 3) and hands them to the
edit operation; the operation validates, commits once and answers with the agent's show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agentstage import api_ops, plans
from agentstage.api_ops import entry_of, entry_path
from agentstage.edit import Edit
from agentstage.errors import Conflict, NotFound
from agentstage.fieldpath import Entry, FieldPath, Key, parse_path
from agentstage.ids import AGENT_ID_RE, AGENT_ID_RULE
from agentstage.layout import ENTRY_ID_PATTERN
from agentstage.server.auth import StoreDep, Who, reader
from agentstage.server.guard import unicode_body
from agentstage.server.responses import (
    ERRORS,
    ActionId,
    AgentId,
    AgentRow,
    CorpusId,
    IfMatch,
    InstructionId,
    Show,
    ToolId,
    Written,
    one_writer,
    shape,
    tagged,
    written,
)

router = APIRouter(prefix="/api/v2/agents", tags=["agents"],
                   dependencies=[Depends(reader), Depends(unicode_body)],
                   responses=ERRORS)
WRITE = shape(Written, etag=True)
Current = Mapping[str, Any]
ENV_PATTERN = r"^(staging|production|v[1-9][0-9]{0,17})$"


class Body_(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NewAgent(Body_):
    id: str = Field(description=f"The agent id: {AGENT_ID_RULE}",
                    json_schema_extra={"pattern": f"^{AGENT_ID_RE.pattern}$"})
    name: str
    description: Any = None
    model: Any = None
    access: Any = None
    tags: Any = None
    message: str | None = None


class Settings(Body_):
    name: Any = None
    description: Any = None
    model: Any = None
    access: Any = None
    tags: Any = None
    message: str | None = None


class Fields(Body_):
    set: dict[str, Any] = Field(default_factory=dict, description="field path -> JSON value")
    unset: list[str] = Field(default_factory=list, description="field paths to remove")
    message: str | None = None


EntryId = Annotated[str, Field(
    description="letters, digits and _ . : -, starting with a letter or digit, at most 128 "
                "characters", json_schema_extra={"pattern": ENTRY_ID_PATTERN})]


class Instruction(Body_):
    id: EntryId
    text: str


class Corpus(Body_):
    id: EntryId
    description: str | None = None
    settings: dict[str, Any] | None = None


class CorpusIds(Body_):
    ids: list[EntryId]
    message: str | None = None


class CorpusUpdate(Body_):
    description: str | None = None
    settings: dict[str, Any] | None = None
    message: str | None = None


class Folder(Body_):
    settings: dict[str, Any]
    description: str | None = None
    message: str | None = None


class GuardrailBody(Body_):
    type: EntryId
    enabled: bool
    config: dict[str, Any] | None = None
    message: str | None = None


class Access(Body_):
    access: Any
    message: str | None = None


class Annotates(Body_):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    message: str | None = None


def _edit(request: Request, store: StoreDep, who: str, agent: str, plan: api_ops.Plan,
          if_match: str | None, message: str | None = None, what: str | None = None
          ) -> JSONResponse:
    result = one_writer(request, lambda: api_ops.edit_agent(
        store, agent, plan, if_match=if_match, message=message, author=who, what=what))
    return written(result)


def _fixed(edits: Sequence[Edit]) -> api_ops.Plan:
    return lambda _current: edits


def _check_ids(kind: str, idents: Sequence[str]) -> None:
    """A bad id in the body is a bad request whatever the agent's version (before If-Match)."""
    for ident in idents:
        api_ops.check_entry_id(kind, ident)


def _need(current: Current, section: str, ident: str, what: str) -> dict[str, Any]:
    entry = entry_of(current, section, ident)
    if entry is None:
        raise NotFound(f"no {what} {ident!r} in this agent on staging")
    return entry


@router.get("", **shape(list[AgentRow]))
def list_agents(store: StoreDep) -> list[dict[str, Any]]:
    """Every agent: its production version (or null) and whether staging differs."""
    from agentstage.agents import agents_table

    return [{"agent": r["agent"], "name": r["name"], "production": r["production"]["version"],
             "staging_changed": r["staging_differs"], "retired": r.get("retired", False)}
            for r in agents_table(store)]


@router.post("", status_code=201, **shape(Written, 201, etag=True))
def create(request: Request, store: StoreDep, who: Who, body: NewAgent) -> JSONResponse:
    """Create an agent on staging with any fields of agent.yaml (`agentstage new`)."""
    fields = body.model_dump(exclude={"id", "message"}, exclude_unset=True)
    result = one_writer(request, lambda: api_ops.create_agent(store, body.id, fields,
                                                              body.message, who))
    return written(result, 201)


@router.get("/{agent_id}", **shape(Show, etag=True, not_modified=True))
def show(request: Request, store: StoreDep, agent_id: AgentId,
         env: Annotated[str, Query(description="staging, production or vN",
                                   pattern=ENV_PATTERN)] = "staging",
         if_none_match: Annotated[str | None, Header(
             description="An ETag of the agent on staging: 304 while it is current")] = None
         ) -> Response:
    """The whole configuration of one environment or publish (`agentstage show`)."""
    del if_none_match  # declared for the document; tagged() reads it from the request
    if env == "staging":
        config, tag = api_ops.staging_view(store, agent_id)
        return tagged(request, config, tag)
    from agentstage.agents import show_config

    return JSONResponse(show_config(store, agent_id, env))


@router.put("/{agent_id}", **WRITE)
def update(request: Request, store: StoreDep, who: Who, agent_id: AgentId, body: Settings,
           if_match: IfMatch = None) -> JSONResponse:
    """Replace the given settings, keep the others; null removes an optional field."""
    given = body.model_fields_set - {"message"}
    edits = [Edit((Key(name),), getattr(body, name), remove=getattr(body, name) is None)
             for name in sorted(given)]
    return _edit(request, store, who, agent_id, _fixed(edits), if_match, body.message)


@router.patch("/{agent_id}/fields", **WRITE)
def patch_fields(request: Request, store: StoreDep, who: Who, agent_id: AgentId, body: Fields,
                 if_match: IfMatch = None) -> JSONResponse:
    """Set and unset fields by path (`agentstage set`, `unset`); values are JSON."""
    edits = [Edit(parse_path(path), value) for path, value in body.set.items()]
    edits += [Edit(parse_path(path), remove=True) for path in body.unset]
    return _edit(request, store, who, agent_id, _fixed(edits), if_match, body.message)


# -- instructions -------------------------------------------------------------------------


@router.post("/{agent_id}/instructions", **WRITE)
def add_instructions(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                     body: Instruction | list[Instruction], if_match: IfMatch = None
                     ) -> JSONResponse:
    """Add one instruction or a list of them, at the end."""
    items = body if isinstance(body, list) else [body]
    _check_ids("instruction", [i.id for i in items])

    def plan(current: Current) -> list[Edit]:
        for item in items:
            if entry_of(current, "instructions", item.id) is not None:
                raise Conflict(f"instruction {item.id!r} exists already",
                               hint="PUT the whole list to change it")
        return [Edit(entry_path("instructions", i.id), {"text": i.text}) for i in items]

    return _edit(request, store, who, agent_id, plan, if_match,
                 what="add instructions " + ", ".join(i.id for i in items))


@router.put("/{agent_id}/instructions", **WRITE)
def replace_instructions(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                         body: list[Instruction], if_match: IfMatch = None) -> JSONResponse:
    """Replace the whole ordered list of instructions."""
    _check_ids("instruction", [i.id for i in body])
    value = [i.model_dump() for i in body]
    return _edit(request, store, who, agent_id, _fixed([Edit((Key("instructions"),), value)]),
                 if_match, what="replace the instructions")


@router.delete("/{agent_id}/instructions/{instruction_id}", **WRITE)
def delete_instruction(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                       instruction_id: InstructionId, if_match: IfMatch = None) -> JSONResponse:
    path = entry_path("instructions", instruction_id)

    def plan(current: Current) -> list[Edit]:
        _need(current, "instructions", instruction_id, "instruction")
        return [Edit(path, remove=True)]

    return _edit(request, store, who, agent_id, plan, if_match,
                 what=f"remove instruction {instruction_id}")


# -- knowledge: corpora and the SharePoint folder -----------------------------------------


def _corpus(item: Corpus | CorpusUpdate, ident: str) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "corpus"}
    if item.description is not None:
        value["description"] = item.description
    if item.settings is not None:
        value["settings"] = item.settings
    return value


def _not_other(current: Current, ident: str, kind: str) -> None:
    entry = entry_of(current, "knowledge", ident)
    if entry is not None and entry.get("type") != kind:
        raise Conflict(f"knowledge source {ident!r} is a {entry.get('type')}, not a {kind}")


@router.post("/{agent_id}/corpora", **WRITE)
def connect_corpora(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                    body: list[Corpus], if_match: IfMatch = None) -> JSONResponse:
    """Connect corpora: knowledge entries of type corpus (a connected one is updated)."""
    _check_ids("corpus", [i.id for i in body])

    def plan(current: Current) -> list[Edit]:
        for item in body:
            _not_other(current, item.id, "corpus")
        return [Edit(entry_path("knowledge", i.id), _corpus(i, i.id)) for i in body]

    return _edit(request, store, who, agent_id, plan, if_match,
                 what="connect corpora " + ", ".join(i.id for i in body))


@router.delete("/{agent_id}/corpora", **WRITE)
def disconnect_corpora(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                       body: CorpusIds, if_match: IfMatch = None) -> JSONResponse:
    _check_ids("corpus", body.ids)

    def plan(current: Current) -> list[Edit]:
        for ident in body.ids:
            if _need(current, "knowledge", ident, "corpus").get("type") != "corpus":
                raise NotFound(f"no corpus {ident!r} in this agent on staging")
        return [Edit(entry_path("knowledge", i), remove=True) for i in body.ids]

    return _edit(request, store, who, agent_id, plan, if_match, body.message,
                 what="disconnect corpora " + ", ".join(body.ids))


@router.post("/{agent_id}/corpora/{corpus_id}", **WRITE)
def connect_corpus(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                   corpus_id: CorpusId,
                   body: Annotated[CorpusUpdate | None, Body()] = None,
                   if_match: IfMatch = None) -> JSONResponse:
    item = body or CorpusUpdate()
    _check_ids("corpus", [corpus_id])

    def plan(current: Current) -> list[Edit]:
        _not_other(current, corpus_id, "corpus")
        if entry_of(current, "knowledge", corpus_id) is not None:
            raise Conflict(f"corpus {corpus_id!r} is connected already",
                           hint=f"PUT .../corpora/{corpus_id} updates it")
        return [Edit(entry_path("knowledge", corpus_id), _corpus(item, corpus_id))]

    return _edit(request, store, who, agent_id, plan, if_match, item.message,
                 what=f"connect corpus {corpus_id}")


@router.put("/{agent_id}/corpora/{corpus_id}", **WRITE)
def update_corpus(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                  corpus_id: CorpusId, body: CorpusUpdate, if_match: IfMatch = None
                  ) -> JSONResponse:
    _check_ids("corpus", [corpus_id])

    def plan(current: Current) -> list[Edit]:
        if _need(current, "knowledge", corpus_id, "corpus").get("type") != "corpus":
            raise NotFound(f"no corpus {corpus_id!r} in this agent on staging")
        edits = []
        if body.settings is not None:
            edits.append(Edit(entry_path("knowledge", corpus_id, "settings"), body.settings))
        if body.description is not None:
            edits.append(Edit(entry_path("knowledge", corpus_id, "description"),
                              body.description))
        return edits

    return _edit(request, store, who, agent_id, plan, if_match, body.message,
                 what=f"update corpus {corpus_id}")


@router.delete("/{agent_id}/corpora/{corpus_id}", **WRITE)
def disconnect_corpus(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                      corpus_id: CorpusId, if_match: IfMatch = None) -> JSONResponse:
    _check_ids("corpus", [corpus_id])

    def plan(current: Current) -> list[Edit]:
        if _need(current, "knowledge", corpus_id, "corpus").get("type") != "corpus":
            raise NotFound(f"no corpus {corpus_id!r} in this agent on staging")
        return [Edit(entry_path("knowledge", corpus_id), remove=True)]

    return _edit(request, store, who, agent_id, plan, if_match,
                 what=f"disconnect corpus {corpus_id}")


@router.post("/{agent_id}/sharepoint/folder", **WRITE)
def connect_folder(request: Request, store: StoreDep, who: Who, agent_id: AgentId, body: Folder,
                   if_match: IfMatch = None) -> JSONResponse:
    """The agent's SharePoint knowledge source (id `sharepoint`)."""
    plan = plans.connect_folder(body.settings, body.description,
                                hint="PUT .../sharepoint/folder updates it")
    return _edit(request, store, who, agent_id, plan, if_match, body.message,
                 what="connect the SharePoint folder")


@router.put("/{agent_id}/sharepoint/folder", **WRITE)
def update_folder(request: Request, store: StoreDep, who: Who, agent_id: AgentId, body: Folder,
                  if_match: IfMatch = None) -> JSONResponse:
    return _edit(request, store, who, agent_id,
                 plans.update_folder(body.settings, body.description), if_match, body.message,
                 what="update the SharePoint folder")


@router.delete("/{agent_id}/sharepoint/folder", **WRITE)
def disconnect_folder(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                      if_match: IfMatch = None) -> JSONResponse:
    return _edit(request, store, who, agent_id, plans.disconnect_folder(), if_match,
                 what="disconnect the SharePoint folder")


# -- tools and actions --------------------------------------------------------------------


@router.post("/{agent_id}/tools/{tool_id}/enable", **WRITE)
def enable_tool(request: Request, store: StoreDep, who: Who, agent_id: AgentId, tool_id: ToolId,
                if_match: IfMatch = None) -> JSONResponse:
    """`enabled: true`, adding the tool if absent."""
    return _edit(request, store, who, agent_id, plans.enable_tool(tool_id), if_match,
                 what=f"enable tool {tool_id}")


@router.delete("/{agent_id}/tools/{tool_id}/disable", **WRITE)
def disable_tool(request: Request, store: StoreDep, who: Who, agent_id: AgentId, tool_id: ToolId,
                 if_match: IfMatch = None) -> JSONResponse:
    path = entry_path("tools", tool_id, "enabled")

    def plan(current: Current) -> list[Edit]:
        _need(current, "tools", tool_id, "tool")
        return [Edit(path, False)]

    return _edit(request, store, who, agent_id, plan, if_match, what=f"disable tool {tool_id}")


def _action_path(tool_id: ToolId, action_id: ActionId, field: str) -> FieldPath:
    api_ops.check_entry_id("action", action_id)
    return entry_path("tools", tool_id, "actions", Entry(action_id), field)


@router.patch("/{agent_id}/tools/{tool_id}/actions/{action_id}", **WRITE)
def patch_action(request: Request, store: StoreDep, who: Who, agent_id: AgentId, tool_id: ToolId,
                 action_id: ActionId, body: Annotated[dict[str, Any], Body()],
                 if_match: IfMatch = None) -> JSONResponse:
    """The action's config, as a JSON merge patch (RFC 7396): null removes a key."""
    path = _action_path(tool_id, action_id, "config")

    def plan(current: Current) -> list[Edit]:
        _need(current, "tools", tool_id, "tool")
        action = _need(current, f"tools/{tool_id}", action_id, "action")
        return [Edit(path, api_ops.merge_patch(action.get("config") or {}, body))]

    return _edit(request, store, who, agent_id, plan, if_match,
                 what=f"update the config of action {tool_id}/{action_id}")


def _toggle_action(request: Request, store: StoreDep, who: str, agent_id: str, tool_id: str,
                   action_id: str, enabled: bool, if_match: str | None) -> JSONResponse:
    path = _action_path(tool_id, action_id, "enabled")

    def plan(current: Current) -> list[Edit]:
        _need(current, "tools", tool_id, "tool")
        if not enabled:
            _need(current, f"tools/{tool_id}", action_id, "action")
        return [Edit(path, enabled)]

    verb = "enable" if enabled else "disable"
    return _edit(request, store, who, agent_id, plan, if_match,
                 what=f"{verb} action {tool_id}/{action_id}")


@router.post("/{agent_id}/tools/{tool_id}/actions/{action_id}/enable", **WRITE)
def enable_action(request: Request, store: StoreDep, who: Who, agent_id: AgentId, tool_id: ToolId,
                  action_id: ActionId, if_match: IfMatch = None) -> JSONResponse:
    """`enabled: true`, adding the action to the tool if absent."""
    return _toggle_action(request, store, who, agent_id, tool_id, action_id, True, if_match)


@router.post("/{agent_id}/tools/{tool_id}/actions/{action_id}/disable", **WRITE)
def disable_action(request: Request, store: StoreDep, who: Who, agent_id: AgentId, tool_id: ToolId,
                   action_id: ActionId, if_match: IfMatch = None) -> JSONResponse:
    return _toggle_action(request, store, who, agent_id, tool_id, action_id, False, if_match)


# -- guardrails, access, tags -------------------------------------------------------------


@router.patch("/{agent_id}/guardrails", **WRITE)
def patch_guardrail(request: Request, store: StoreDep, who: Who, agent_id: AgentId,
                    body: GuardrailBody, if_match: IfMatch = None) -> JSONResponse:
    """Enable or disable one guardrail type (added if absent), optionally its config."""
    edits = [Edit(entry_path("guardrails", body.type, "enabled"), body.enabled)]
    if body.config is not None:
        edits.append(Edit(entry_path("guardrails", body.type, "config"), body.config))
    verb = "enable" if body.enabled else "disable"
    return _edit(request, store, who, agent_id, _fixed(edits), if_match, body.message,
                 what=f"{verb} guardrail {body.type}")


@router.put("/{agent_id}/access", **WRITE)
def put_access(request: Request, store: StoreDep, who: Who, agent_id: AgentId, body: Access,
               if_match: IfMatch = None) -> JSONResponse:
    return _edit(request, store, who, agent_id, _fixed([Edit((Key("access"),), body.access)]),
                 if_match, body.message, what=f"access {body.access}")


@router.post("/{agent_id}/annotates", **WRITE)
def annotate(request: Request, store: StoreDep, who: Who, agent_id: AgentId, body: Annotates,
             if_match: IfMatch = None) -> JSONResponse:
    """Add and remove tags."""
    def plan(current: Current) -> list[Edit]:
        old = current.get("tags")
        tags = [t for t in (old if isinstance(old, list) else []) if t not in body.remove]
        tags += [t for t in dict.fromkeys(body.add) if t not in tags]
        return [] if tags == old or (not tags and old is None) else \
            [Edit((Key("tags"),), tags)]

    return _edit(request, store, who, agent_id, plan, if_match, body.message,
                 what="tags: " + ", ".join([*(f"+{t}" for t in body.add),
                                            *(f"-{t}" for t in body.remove)]))
