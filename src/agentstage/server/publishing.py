"""Review, publish, history, and revert or restore of any publish (with a preview first)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agentstage import api_ops
from agentstage.ids import check_agent_id
from agentstage.server.auth import (
    PublisherWho,
    ReaderDep,
    StoreDep,
    Who,
    check_publisher,
    reader,
)
from agentstage.server.guard import unicode_body
from agentstage.server.responses import (
    ERRORS,
    AgentId,
    ChangeTrackId,
    Diff,
    HistoryEntry,
    HistoryPage,
    IfMatch,
    Preview,
    Published,
    RolledBack,
    one_writer,
    shape,
    written,
)

router = APIRouter(prefix="/api/v2", tags=["publishing"],
                   dependencies=[Depends(reader), Depends(unicode_body)],
                   responses=ERRORS)


class Publish(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field(description="Why this goes live (recorded in the publish)")


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str = Field(description="The agent id")
    if_match: str | None = Field(None, description="The agent's staging-diff ETag: only the "
                                 "staging that was reviewed is published")


class PublishMany(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    agents: list[str | Target] = Field(min_length=1, description="The agents: ids, or "
                                       "{id, if_match} objects")
    reason: str = Field(description="Why these go live (recorded in each publish)")
    skip_unchanged: bool = Field(False, description="Leave out the agents with nothing to "
                                 "publish instead of refusing all (409)")


class Release(BaseModel):
    model_config = ConfigDict(extra="allow")
    release: list[str]
    publishes: list[Published]
    skipped: list[str]


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    change_track_id: int | str = Field(description="The publish: its version N, or its tag")
    reason: str | None = None


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # query text: "2" is 2
    author: str | None = Field(None, description="part of the publisher's name or email")
    since: str | None = Field(None, description="ISO date or datetime")
    until: str | None = Field(None, description="ISO date or datetime; a date: the whole day")
    limit: int | None = Field(None, ge=1, le=api_ops.MAX_PAGE)
    cursor: str | None = Field(None, description="next_cursor of the previous page")


@router.get("/agents/{agent_id}/staging-diff", **shape(Diff, etag=True))
def staging_diff(store: StoreDep, agent_id: AgentId) -> JSONResponse:
    """Staging against production, only the fields that differ (`agentstage diff`); the
    ETag names the staging shown, for the publish's If-Match."""
    diff, tag = api_ops.staging_diff(store, agent_id)
    return JSONResponse(diff, headers={"ETag": tag} if tag else None)


@router.post("/agents/{agent_id}/publish", **shape(Published))
def publish(request: Request, store: StoreDep, who: PublisherWho, agent_id: AgentId, body: Publish,
            if_match: IfMatch = None) -> dict[str, Any]:
    """Make staging live; 409 `nothing_to_publish` when staging is production already. With
    If-Match (the staging-diff's ETag), only the staging that was reviewed is published."""
    result = one_writer(request, lambda: api_ops.publish(store, agent_id, body.reason, who,
                                                         if_match))
    request.app.state.metrics.published(agent_id)
    return result


@router.post("/publish", **shape(Release))
def publish_many(request: Request, store: StoreDep, caller: ReaderDep, body: PublishMany
                 ) -> dict[str, Any]:
    """Publish several agents at once, all or none (`agentstage publish A B ...`): the
    caller must be a publisher of each (403 naming the first they may not); 409
    `nothing_to_publish` when one has nothing to publish (unless `skip_unchanged`); 422
    located when one is invalid; 412 when an agent's `if_match` no longer matches. Each
    agent gets its next tag; each record names the release."""
    targets = [(t, None) if isinstance(t, str) else (t.id, t.if_match) for t in body.agents]
    for agent, _if_match in targets:
        check_agent_id(agent)  # 400 before the policy names it
    who = ""
    for agent, _if_match in targets:
        who = check_publisher(request, store, caller, agent)
    result = one_writer(request, lambda: api_ops.publish_many(
        store, targets, body.reason, who, body.skip_unchanged))
    for published in result["publishes"]:
        request.app.state.metrics.published(published["agent"])
    return result


@router.get("/agents/{agent_id}/publishes", **shape(HistoryPage))
def agent_publishes(store: StoreDep, agent_id: AgentId,
                    query: Annotated[Filters, Query()]) -> dict[str, Any]:
    """The agent's publishes, newest first, a page at a time (`agentstage history`)."""
    return api_ops.history_page(store, agent_id, query.author, query.since, query.until,
                                query.limit, query.cursor)


@router.get("/agents/{agent_id}/publishes/{change_track_id}", **shape(HistoryEntry))
def one_publish(store: StoreDep, agent_id: AgentId, change_track_id: ChangeTrackId
                ) -> dict[str, Any]:
    return api_ops.publish_entry(store, agent_id, change_track_id)


@router.get("/agents/{agent_id}/publishes/{change_track_id}/diff", **shape(Preview))
def preview(store: StoreDep, agent_id: AgentId, change_track_id: ChangeTrackId,
            action: Literal["revert", "restore"] = "revert") -> dict[str, Any]:
    """What reverting (or restoring) this publish would change on staging, and in production
    after the next publish (`revert --preview`)."""
    return api_ops.preview(store, agent_id, action, change_track_id)


def _rollback(request: Request, store: StoreDep, who: str, agent_id: str, action: str,
              body: Rollback, if_match: str | None) -> JSONResponse:
    result = one_writer(request, lambda: api_ops.rollback(
        store, agent_id, action, body.change_track_id, body.reason, who, if_match))
    return written(result)


@router.put("/agents/{agent_id}/rollback", **shape(RolledBack, etag=True))
def rollback(request: Request, store: StoreDep, who: Who, agent_id: AgentId, body: Rollback,
             if_match: IfMatch = None) -> JSONResponse:
    """Undo on staging the changes that publish introduced (`agentstage revert`)."""
    return _rollback(request, store, who, agent_id, "revert", body, if_match)


@router.put("/agents/{agent_id}/restore", **shape(RolledBack, etag=True))
def restore(request: Request, store: StoreDep, who: Who, agent_id: AgentId, body: Rollback,
            if_match: IfMatch = None) -> JSONResponse:
    """Set staging's agent back to that publish's snapshot (`agentstage restore`)."""
    return _rollback(request, store, who, agent_id, "restore", body, if_match)


@router.get("/publishes", **shape(HistoryPage))
def publishes(store: StoreDep, query: Annotated[Filters, Query()]) -> dict[str, Any]:
    """Publishes of every agent, newest first, a page at a time."""
    return api_ops.history_page(store, None, query.author, query.since, query.until,
                                query.limit, query.cursor)
