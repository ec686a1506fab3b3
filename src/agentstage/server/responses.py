"""Turning operation values into responses: JSON, an ETag, and 304 for a matching one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Header, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agentstage import model
from agentstage.api_ops import matches
from agentstage.ids import AGENT_ID_RE, AGENT_ID_RULE
from agentstage.layout import ENTRY_ID_PATTERN

T = TypeVar("T")


class ProblemOut(BaseModel):
    file: str
    line: int | None
    path: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None
    problems: list[ProblemOut] | None = None


class ErrorOut(BaseModel):
    """Every error (DESIGN.md section 8); some carry the outcome's payload beside it."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text} for status, text in (
        (400, "usage: a bad id, path, parameter or body, or a Host this server does not "
              "answer for"),
        (401, "unauthenticated: no credentials, or a token unknown, revoked or expired"),
        (403, "policy: the policy does not let the caller do this, or a state-changing "
              "request came from another site"),
        (404, "not_found: no such agent, publish or field"),
        (409, "conflict, or nothing_to_publish"),
        (412, "precondition_failed: If-Match names an older version"),
        (413, "too_large: a body over 1 MiB"),
        (415, "unsupported_media_type: a body that is not application/json"),
        (422, "invalid: the problems, each with its file, line and field path"),
        (500, "internal"),
    )}


# -- the success shapes (DESIGN.md section 4), for the OpenAPI document: keys may be added --


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Show(model.Settings):
    """The show shape: agent.yaml's settings and the four lists, as one object."""

    instructions: list[model.Instruction] = Field(default_factory=list)
    knowledge: list[model.KnowledgeSource] = Field(default_factory=list)
    tools: list[model.Tool] = Field(default_factory=list)
    guardrails: list[model.Guardrail] = Field(default_factory=list)


class Change(Open):
    """One field that differs; "production" is the old side, "staging" the new."""

    section: str
    path: str
    change: Literal["added", "removed", "modified"]
    production: Any = None
    staging: Any = None


class Side(Open):
    commit: str | None
    version: int | None = None


class Diff(Open):
    agent: str
    has_changes: bool
    production: Side
    staging: Side
    changes: list[Change]


class Written(Open):
    """A staging write: its commit (null when it changed nothing), the fields it changed,
    and the agent's staging configuration after it; the ETag header is its new version."""

    agent: str
    commit: str | None
    changes: list[Change] = Field(default_factory=list)
    config: Show | None = Field(description="null when the write removed the agent from "
                                            "staging (a revert of the publish that made it)")


class RolledBack(Written):
    tag: str
    action: Literal["revert", "restore"]


class AgentRow(Open):
    agent: str
    name: str
    production: int | None = Field(description="the version in production, or null")
    staging_changed: bool
    retired: bool = False


class Published(Open):
    agent: str
    published: Literal[True]
    version: int
    tag: str
    commit: str
    previous: str | None
    changes: list[Change]


class Person(Open):
    name: str
    email: str


class HistoryEntry(Open):
    """One publish as its tag records it. The record's own claims (agent, version, previous,
    changes...) are checked against the repository: `verified` says whether they hold and
    `problems` what does not."""

    agent: Any = Field(description="as recorded")
    version: Any = Field(description="as recorded")
    tag: str
    commit: str
    published_by: Person
    published_at: str
    reason: str
    previous: Any = Field(description="as recorded")
    changes: list[Any]
    verified: bool
    problems: list[str]


class HistoryPage(Open):
    publishes: list[HistoryEntry]
    next_cursor: str | None = Field(description="pass it as cursor for the next page")


class PreviewDiff(Open):
    agent: str
    has_changes: bool
    production: Side
    staging: Side
    changes: list[Change]


class Preview(Open):
    """What reverting or restoring a publish would change: on staging now, and in
    production after the next publish; with conflicts nothing would be done."""

    agent: str
    tag: str
    action: Literal["revert", "restore"]
    staging: PreviewDiff
    production: PreviewDiff
    conflicts: list[dict[str, Any]]


def entry_id(what: str) -> Any:
    return Path(description=f"The {what}'s id: letters, digits and _ . : -, starting with a "
                            "letter or digit, at most 128 characters",
                json_schema_extra={"pattern": ENTRY_ID_PATTERN})


AgentId = Annotated[str, Path(description=f"The agent id: {AGENT_ID_RULE}",
                              json_schema_extra={"pattern": f"^{AGENT_ID_RE.pattern}$"})]
ChangeTrackId = Annotated[str, Path(
    description="The publish: its version N (or vN)",
    json_schema_extra={"pattern": "^v?[1-9][0-9]{0,17}$"})]
ToolId = Annotated[str, entry_id("tool")]
ActionId = Annotated[str, entry_id("action")]
InstructionId = Annotated[str, entry_id("instruction")]
CorpusId = Annotated[str, entry_id("corpus")]
IfMatch = Annotated[str | None, Header(description="The agent's ETag this write is based on")]

ETAG = {"ETag": {"description": "the agent's version on staging: send it back as If-Match",
                 "schema": {"type": "string"}}}


def shape(out: type[BaseModel] | Any, status: int = 200, etag: bool = False,
          not_modified: bool = False) -> dict[str, Any]:
    """The decorator arguments that document a route's success: its body (documentation
    only: the route's value is sent as it is), its ETag, and 304 for a matching
    If-None-Match."""
    ok: dict[str, Any] = {"model": out, "description": "done"}
    if etag:
        ok["headers"] = ETAG
    responses: dict[int | str, dict[str, Any]] = {status: ok}
    if not_modified:
        responses[304] = {"description": "If-None-Match names the current version",
                          "headers": ETAG}
    return {"response_model": None, "responses": responses}


def written(result: dict[str, Any], status: int = 200) -> JSONResponse:
    """A write's answer: its value (the operation's "etag" becomes the ETag header)."""
    body = dict(result)
    tag = body.pop("etag", None)
    return JSONResponse(body, status_code=status, headers={"ETag": tag} if tag else None)


def tagged(request: Request, value: Any, tag: str | None) -> Response:
    """*value* with ETag *tag* (a quoted string); 304 when If-None-Match names it."""
    headers = {"ETag": tag} if tag else {}
    wanted = request.headers.get("if-none-match")
    if tag and wanted is not None and matches(wanted, tag.strip('"')):
        return Response(status_code=304, headers=headers)
    return JSONResponse(value, headers=headers or None)


@contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    with lock:
        yield


def one_writer(request: Request, write: Callable[[], T]) -> T:
    """Run *write* while no other request of this server writes: its own writes never race
    each other; a race with another process is handled by the operation (retry or 409).
    A server following a remote (--remote) follows it first and pushes before answering."""
    with _held(request.app.state.write_lock):
        replica = getattr(request.app.state, "replica", None)
        return write() if replica is None else replica.write(write)
