"""What agent runtimes read: production, never staging; ETags so a poll costs a 304."""

from __future__ import annotations

import hashlib
import json

from fastapi import APIRouter, Depends, Request, Response

from agentstage import api_ops
from agentstage.server.auth import StoreDep, reader
from agentstage.server.responses import ERRORS, tagged

router = APIRouter(prefix="/api/v2", tags=["delivery"], dependencies=[Depends(reader)],
                   responses=ERRORS)


@router.get("/agents/{agent_id}/production")
def production(request: Request, store: StoreDep, agent_id: str) -> Response:
    """The agent's live configuration; the ETag is its publish tag; 404 when never
    published."""
    view = api_ops.production_view(store, agent_id)
    return tagged(request, view, f'"{view["tag"]}"')


@router.get("/production")
def production_list(request: Request, store: StoreDep) -> Response:
    """Every agent in production with its version."""
    rows = api_ops.production_list(store)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:32]
    return tagged(request, rows, f'"{digest}"')
