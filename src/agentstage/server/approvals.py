"""Approvals (four eyes): who approved the agent's staged content, and approving it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from agentstage import api_ops
from agentstage.errors import PolicyDenied
from agentstage.server.auth import Caller, ReaderDep, StoreDep, check_publisher, reader
from agentstage.server.guard import unicode_body
from agentstage.server.responses import ERRORS, AgentId, Open, one_writer, shape
from agentstage.store import Store

router = APIRouter(prefix="/api/v2", tags=["approvals"],
                   dependencies=[Depends(reader), Depends(unicode_body)], responses=ERRORS)


class Approve(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    note: str | None = Field(None, max_length=2000, description="kept with the approval")


class ApprovalOut(Open):
    id: str = Field(description="the approval's tag object")
    tree: str = Field(description="the tree of agents/<id> it approves")
    approver: str
    email: str
    time: str
    note: str
    current: bool = Field(description="whether it approves the content staged now")


class Approver(Open):
    approver: str
    email: str


class Staged(Open):
    commit: str
    tree: str


class Approvals(Open):
    """What is approved of the agent (newest first), by whom, and what the policy
    requires; the publisher's own approval never counts toward their publish."""

    agent: str
    staging: Staged
    required: int = Field(description="approvals a publish needs (the policy's approvals)")
    approved_by: list[Approver] = Field(description="the current approvals, one per person")
    who_may_approve: list[str]
    approvals: list[ApprovalOut]
    problems: list[str]


class Approved(Approvals):
    approval: ApprovalOut = Field(description="the caller's approval of the staged content")
    created: bool = Field(description="false when the caller had approved it already")


def check_approver(request: Request, store: Store, caller: Caller, agent: str) -> str:
    """`Name <email>` of *caller* when the policy lets them approve *agent* (those who may
    publish it: its publishers and the admins); else 403 naming who may."""
    from agentstage.approvals import approvers

    try:
        return check_publisher(request, store, caller, agent)
    except PolicyDenied:
        policy = request.app.state.policy.get(store)
        raise PolicyDenied(
            f"{caller.name} may not approve {agent}: approvers are those who may publish "
            f"it ({', '.join(approvers(policy, agent))})",
            hint=f"ask an admin to add them to publishers.{agent} in refs/meta/agentstage"
        ) from None


@router.get("/agents/{agent_id}/approvals", **shape(Approvals))
def approvals(store: StoreDep, agent_id: AgentId) -> dict[str, Any]:
    """The agent's approvals, current (of its content staged now) or void
    (`agentstage approvals`)."""
    return api_ops.approvals_view(store, agent_id)


@router.post("/agents/{agent_id}/approvals", **shape(Approved))
def approve(request: Request, store: StoreDep, caller: ReaderDep, agent_id: AgentId,
            body: Approve | None = None) -> dict[str, Any]:
    """Approve the agent's content staged now as the caller (`agentstage approve`); any
    later change voids it. 403 for a caller who may not publish the agent."""
    author = check_approver(request, store, caller, agent_id)
    note = body.note if body is not None else None
    return one_writer(request, lambda: api_ops.approve(store, agent_id, note, author))
