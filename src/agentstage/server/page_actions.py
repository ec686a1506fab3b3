"""The review page's actions (DESIGN.md section 9): publish with a reason and a confirmation
step, and revert or restore of a history entry from its preview. Each calls the operation
the JSON API calls (api_ops), with the staging version the page showed as If-Match, so what
is published or rolled back is what was reviewed. A refusal re-renders the page it came
from with the reason and what to do, keeping what was typed, under the API's status.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from agentstage import api_ops, html
from agentstage.errors import AgentstageError, UsageError
from agentstage.server.auth import StoreDep, check_editor, check_publisher, powers
from agentstage.server.page_base import PageRoute, page, problem, status_of
from agentstage.server.page_session import FormDep, PosterDep, redirect
from agentstage.server.responses import one_writer
from agentstage.store import Store

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_REASON = 10_000


def staging_etag(store: Store, agent: str) -> str:
    from agentstage.agents import staging_head

    return api_ops.etag(store.agent_tree(staging_head(store), agent)) or ""


def review_context(request: Request, store: Store, agent: str) -> dict[str, Any]:
    """What review.html needs: the diff, the ETag it shows, what the viewer may do."""
    from agentstage.server.pages import agent_name

    diff, etag = api_ops.staging_diff(store, agent)
    may_edit, may_publish = powers(request, store, request.state.caller, agent)
    try:
        approvals: dict[str, Any] | None = api_ops.approvals_view(store, agent)
    except AgentstageError:  # not on staging (retired): nothing to approve
        approvals = None
    return {"agent": agent, "name": agent_name(store, agent), "review": html.review(diff),
            "etag": etag or "", "may_edit": may_edit, "may_publish": may_publish,
            "reason": "", "error": None, "approvals": approvals,
            "crumbs": [("Agents", "/"), (agent, None)]}


def _reason(form: dict[str, str], required: bool) -> str:
    reason = form.get("reason", "").strip()
    if required and not reason:
        raise UsageError("a publish needs a reason", hint="say why this goes live: it is "
                         "recorded in the publish history")
    if len(reason) > MAX_REASON:
        raise UsageError(f"the reason is over {MAX_REASON} characters",
                         hint="keep it to a few lines")
    return reason


@router.post("/agents/{agent_id}/publish")
def publish(request: Request, store: StoreDep, caller: PosterDep, form: FormDep,
            agent_id: str) -> Response:
    """step=confirm: what goes live, to confirm; step=publish: publish it (If-Match: the
    staging the confirmation showed); step=back: the review with the reason kept."""
    step = form.get("step", "confirm")
    typed = form.get("reason", "")
    try:
        if step == "back":
            return page(request, "review.html", **{**review_context(request, store, agent_id),
                                                   "reason": typed})
        if step not in ("confirm", "publish"):
            raise UsageError(f"unknown step {step!r}")
        who = check_publisher(request, store, caller, agent_id)
        reason = _reason(form, required=True)
        etag = form.get("etag") or None
        if step == "confirm":
            diff, current = api_ops.staging_diff(store, agent_id)
            if etag is not None and current != etag:
                raise api_ops.PreconditionFailed(
                    f"{agent_id} changed on staging since you reviewed it; nothing was "
                    "published", hint="review the changes below again, then publish")
            if not diff["has_changes"]:
                from agentstage.errors import NothingToPublish

                raise NothingToPublish(f"nothing to publish: staging's {agent_id} is what "
                                       "production is")
            review = html.review(diff)
            return page(request, "publish_confirm.html", agent=agent_id, review=review,
                        reason=reason, etag=current or "",
                        version=(review.old_version or 0) + 1,
                        crumbs=[("Agents", "/"), (agent_id, f"/agents/{agent_id}"),
                                ("Confirm publish", None)])
        result = one_writer(request, lambda: api_ops.publish(store, agent_id, reason, who,
                                                             etag))
        request.app.state.metrics.published(agent_id)
        return redirect(f"/agents/{agent_id}/history/{int(result['version'])}?"
                        + urlencode({"published": "1"}))
    except AgentstageError as exc:
        context = review_context(request, store, agent_id)
        error = problem(exc)
        if isinstance(exc, api_ops.PreconditionFailed):
            error["hint"] = ("someone changed it meanwhile: the review below is staging now; "
                             "check it, then publish again (your reason is kept)")
        return page(request, "review.html", error["status"],
                    **{**context, "reason": typed, "error": error})


@router.post("/agents/{agent_id}/history/{number}/{action}")
def rollback(request: Request, store: StoreDep, caller: PosterDep, form: FormDep,
             agent_id: str, number: str, action: str) -> Response:
    """Revert (or restore) publish *number* on staging, after its preview; production is
    untouched until the next publish."""
    from agentstage.server.pages import preview_context

    if action not in ("revert", "restore"):
        raise UsageError(f"action must be revert or restore, not {action!r}")
    typed = form.get("reason", "")
    try:
        who = check_editor(request, store, caller)
        reason = _reason(form, required=False)
        result = one_writer(request, lambda: api_ops.rollback(
            store, agent_id, action, number, reason or None, who, form.get("etag") or None))
    except AgentstageError as exc:
        context = preview_context(request, store, agent_id, action, number)
        error = problem(exc)
        if isinstance(exc, api_ops.PreconditionFailed):
            error["hint"] = ("someone changed staging meanwhile: the preview below is "
                             "computed again; check it, then confirm again")
        return page(request, "preview.html", error["status"],
                    **{**context, "reason": typed, "error": error})
    version = api_ops.tag_of(agent_id, number).rpartition("/v")[2]
    return redirect(f"/agents/{agent_id}?" + urlencode(
        {"done": action, "version": version, "commit": str(result.get("commit") or "")[:12]}))


@router.post("/agents/{agent_id}/approve")
def approve(request: Request, store: StoreDep, caller: PosterDep, form: FormDep,
            agent_id: str) -> Response:
    """Approve the staged content the review showed (its ETag): a change since then is
    refused (412), so what is approved is what was read."""
    from agentstage.server.approvals import check_approver

    try:
        who = check_approver(request, store, caller, agent_id)
        note = form.get("note", "").strip()
        shown = form.get("etag") or None
        if shown is not None and shown != staging_etag(store, agent_id):
            raise api_ops.PreconditionFailed(
                f"{agent_id} changed on staging since you reviewed it; nothing was approved",
                hint="review the changes below again, then approve")
        done = one_writer(request, lambda: api_ops.approve(store, agent_id, note or None, who))
    except AgentstageError as exc:
        return page(request, "review.html", status_of(exc),
                    **{**review_context(request, store, agent_id), "error": problem(exc)})
    what = "approved" if done["created"] else "had already approved"
    return page(request, "review.html", **{
        **review_context(request, store, agent_id),
        "notice": f"You {what} the staged content of {agent_id} shown below."})
