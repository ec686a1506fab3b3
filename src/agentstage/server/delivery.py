"""What agent runtimes read: production, never staging; ETags so a poll costs a 304.

A published configuration never changes (its tag is immutable), so each answer is kept in
memory once made: `Cache` holds, per agent, the answer for its current publish tag, and the
listing of every agent. The routes below fill it; the fast path (server/fastpath.py)
answers from it without reading git; the watcher (server/events.py) drops an agent's
answer when that agent's production or tags move, and the listing when anything does.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from agentstage import api_ops
from agentstage.api_ops import matches
from agentstage.server.auth import StoreDep, reader
from agentstage.server.responses import ERRORS

router = APIRouter(prefix="/api/v2", tags=["delivery"], dependencies=[Depends(reader)],
                   responses=ERRORS)

AGENT_ROUTE = "/api/v2/agents/{agent_id}/production"
LIST_ROUTE = "/api/v2/production"


@dataclass(frozen=True)
class Answer:
    """A delivery answer as sent: its ETag (quoted) and the raw ASGI headers and body of
    its 200 and of its 304."""

    etag: str
    body: bytes
    headers: list[tuple[bytes, bytes]]
    not_modified: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, value: Any, etag: str) -> Answer:
        full = JSONResponse(value, headers={"ETag": etag})
        return cls(etag, bytes(full.body), list(full.raw_headers),
                   list(Response(status_code=304, headers={"ETag": etag}).raw_headers))

    def response(self, if_none_match: str | None) -> Response:
        if if_none_match is not None and matches(if_none_match, self.etag.strip('"')):
            return Response(status_code=304, headers={"ETag": self.etag})
        return Response(self.body, media_type="application/json", headers={"ETag": self.etag})


class Cache:
    """Answers by agent (for its current publish tag) and the listing; see the module.

    A route takes a ticket before it reads git and fills with it after: the fill is kept
    only when no change was seen in between (else the answer may predate that change)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.agents: dict[str, Answer] = {}  # read without the lock by the fast path
        self.listing: Answer | None = None
        self._epoch = 0  # changes seen so far

    def ticket(self) -> int:
        return self._epoch

    def fill(self, ticket: int, agent: str | None, answer: Answer) -> None:
        """Keep *answer* for *agent* (None: the listing), unless a change came after
        *ticket*."""
        with self._lock:
            if ticket != self._epoch:
                return
            if agent is None:
                self.listing = answer
            else:
                self.agents[agent] = answer

    def forget(self, agents: set[str] | None) -> None:
        """Drop the answers of *agents* (None: of every agent) and the listing."""
        with self._lock:
            self._epoch += 1
            self.listing = None
            if agents is None:
                self.agents.clear()
            for agent in agents or ():
                self.agents.pop(agent, None)


@router.get("/agents/{agent_id}/production")
def production(request: Request, store: StoreDep, agent_id: str) -> Response:
    """The agent's live configuration; the ETag is its publish tag; 404 when never
    published."""
    request.app.state.events.start()  # the watcher sees every change after this read
    cache: Cache = request.app.state.delivery
    ticket = cache.ticket()
    view = api_ops.production_view(store, agent_id)  # the tag's own commit and config
    answer = Answer.of(view, f'"{view["tag"]}"')
    cache.fill(ticket, agent_id, answer)
    return answer.response(request.headers.get("if-none-match"))


@router.get("/production")
def production_list(request: Request, store: StoreDep) -> Response:
    """Every agent in production with its version."""
    request.app.state.events.start()
    cache: Cache = request.app.state.delivery
    ticket = cache.ticket()
    rows = api_ops.production_list(store)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:32]
    answer = Answer.of(rows, f'"{digest}"')
    cache.fill(ticket, None, answer)
    return answer.response(request.headers.get("if-none-match"))
