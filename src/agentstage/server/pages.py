"""The review pages (DESIGN.md section 9): server-rendered HTML over the same operations the
JSON API calls. Each route reads its GET parameters, calls the operation, and renders a
template of `templates/` through `agentstage.html`; an error becomes an HTML page with the
status the API gives it (never a traceback). Every response forbids framing and script.

The forms that change something (publish, revert and restore: page_actions.py; staging
edits: page_edit.py) and the login (page_session.py) are routes of the same router, behind
the same `PageRoute`; `page()` puts the form's CSRF token and the viewer's role in every
page's context.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from agentstage import api_ops, html
from agentstage.errors import AgentstageError, NotFound, UsageError
from agentstage.server import page_actions, page_edit, page_session
from agentstage.server.auth import PageReaderDep, StoreDep, check_editor
from agentstage.server.page_base import PageRoute, page, problem, secured
from agentstage.server.page_session import FormDep, PosterDep
from agentstage.server.responses import one_writer

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 100  # agents per page of the list
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


STATIC = {"agentstage.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The stylesheet and the icon (no credentials needed: an error page uses them too)."""
    if name not in STATIC:
        raise NotFound(f"no such file {name!r}")
    body = html.stylesheet() if name == "agentstage.css" else \
        (html.STATIC / name).read_bytes()
    return secured(Response(body, media_type=STATIC[name],
                            headers={"Cache-Control": "public, max-age=3600"}))


def _int(name: str, text: str | None, default: int, low: int = 1, high: int | None = None
         ) -> int:
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise UsageError(f"{name} must be a whole number, got {text!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise UsageError(f"{name} must be {low} to {high}" if high else
                         f"{name} must be {low} or more", hint=f"e.g. {name}={default}")
    return value


def _matches(query: str, row: Mapping[str, Any]) -> bool:
    needle = query.casefold()
    return needle in str(row.get("agent", "")).casefold() or \
        needle in str(row.get("name") or "").casefold()


def agents_context(request: Request, store: Any, q: str, number: int) -> dict[str, Any]:
    from agentstage.agents import agents_table
    from agentstage.server.auth import powers

    query = q.strip()
    rows = agents_table(store)
    matched = [r for r in rows if _matches(query, r)] if query else rows
    pages = max(1, math.ceil(len(matched) / PAGE_SIZE))
    number = min(number, pages)
    shown = [api_ops.agent_overview(store, r)
             for r in matched[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]]

    def page_url(n: int) -> str:
        return "/?" + urlencode({k: v for k, v in (("q", query), ("page", str(n))) if v})

    caller = getattr(request.state, "caller", None)
    may_edit = caller is not None and powers(request, store, caller, "")[0]
    return {"rows": shown, "q": query, "total": len(rows), "matched": len(matched),
            "page": number, "pages": pages, "page_url": page_url, "may_edit": may_edit,
            "waiting": sum(1 for r in shown if r["changes"]), "typed": {}, "error": None,
            "crumbs": [("Agents", None)]}


@router.get("/")
def agents_page(request: Request, store: StoreDep, _viewer: PageReaderDep, q: str = "") -> Response:
    """Every agent: its production version, its last publish, and staging's changes; to
    editors, a form that adds one."""
    number = _int("page", request.query_params.get("page"), 1)
    return page(request, "agents.html", **agents_context(request, store, q, number))


@router.post("/agents")
def new_agent(request: Request, store: StoreDep, caller: PosterDep, form: FormDep) -> Response:
    """A new agent on staging (one commit, as POST /api/v2/agents), then its edit page."""
    agent = form.get("id", "").strip()
    try:
        who = check_editor(request, store, caller)
        fields: dict[str, Any] = {"name": form.get("name", "").strip()}
        if form.get("description", "").strip():
            fields["description"] = form["description"].strip()
        model = {k: form.get(k, "").strip() for k in ("provider", "model")}
        if any(model.values()):
            fields["model"] = {**api_ops.AGENT_TEMPLATE_MODEL,
                               **({"provider": model["provider"]} if model["provider"] else {}),
                               **({"name": model["model"]} if model["model"] else {})}
        one_writer(request, lambda: api_ops.create_agent(
            store, agent, fields, form.get("message", "").strip() or None, who))
    except AgentstageError as exc:
        context = agents_context(request, store, "", 1)
        context.update(typed=form, error=problem(exc))
        return page(request, "agents.html", context["error"]["status"], **context)
    return page_session.redirect(f"/agents/{agent}/edit?" + urlencode({"saved": "new agent"}))


def agent_name(store: Any, agent: str) -> str | None:
    try:
        config, _tag = api_ops.staging_view(store, agent)
    except AgentstageError:
        return None
    name = config.get("name")
    return name if isinstance(name, str) else None


DONE = {"revert": "Reverted v{v} on staging", "restore": "Restored the snapshot of v{v} on "
        "staging"}


@router.get("/agents/{agent_id}")
def review_page(request: Request, store: StoreDep, _viewer: PageReaderDep, agent_id: str,
                done: str = "", version: str = "") -> Response:
    """One agent's review: production beside staging, only the fields that differ; the
    publish form when there is something to publish and the viewer may publish."""
    from agentstage.server.page_actions import review_context

    context = review_context(request, store, agent_id)
    if done in DONE and version.isascii() and version.isdigit() and len(version) < 10:
        context["notice"] = (DONE[done].format(v=version) + ". Production is untouched "
                             "until someone publishes: review the changes below.")
    return page(request, "review.html", **context)


def _date_like(value: str) -> bool:
    return not value or _DATE.fullmatch(value) is not None


@router.get("/agents/{agent_id}/history")
def history_page(request: Request, store: StoreDep, _viewer: PageReaderDep, agent_id: str,
                 author: str = "", since: str = "", until: str = "",
                 limit: str | None = None, cursor: str = "") -> Response:
    """The agent's publishes, newest first, filtered by person and dates (GET parameters,
    so a filtered view is a link), a page at a time."""
    from agentstage.semdiff import summarize

    size = _int("limit", limit, 50, 1, api_ops.MAX_PAGE)
    author, since, until = author.strip(), since.strip(), until.strip()
    found = api_ops.history_page(store, agent_id, author or None, since or None, until or None,
                                 size, cursor or None)
    entries = [{**e, "summary": summarize(e.get("changes") or [])} for e in found["publishes"]]
    filters = [(k, v) for k, v in (("author", author), ("since", since), ("until", until),
                                   ("limit", limit or "")) if v]
    base = f"/agents/{agent_id}/history"
    first_url = base + ("?" + urlencode(filters) if filters else "")
    next_url = base + "?" + urlencode([*filters, ("cursor", found["next_cursor"])]) \
        if found["next_cursor"] else None
    return page(request, "history.html", agent=agent_id, entries=entries, author=author,
                since=since, until=until, cursor=cursor, filtered=bool(author or since or until),
                first_url=first_url, next_url=next_url, date_like=_date_like,
                crumbs=[("Agents", "/"), (agent_id, f"/agents/{agent_id}"),
                        ("History", None)])


def _version(tag: Any) -> int | None:
    text = str(tag or "").rpartition("/v")[2]
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


@router.get("/agents/{agent_id}/history/{number}")
def entry_page(request: Request, store: StoreDep, _viewer: PageReaderDep, agent_id: str,
               number: str, published: str = "") -> Response:
    """One publish: who, when, why, and its whole diff."""
    from agentstage.agents import agent_state

    entry = api_ops.publish_entry(store, agent_id, number)
    version = int(entry["version"])
    previous = _version(entry.get("previous"))
    state = agent_state(store, agent_id)
    before = f"Before (v{previous})" if previous else "Before (not published)"
    diff = {"agent": agent_id, "has_changes": True, "changes": entry.get("changes") or [],
            "production": {"version": previous}, "staging": {"commit": entry.get("commit")}}
    return page(request, "entry.html", agent=agent_id, entry=entry,
                review=html.review(diff), sides=(before, f"v{version}"),
                previous_version=previous,
                newer_version=version + 1 if version < state.version else None,
                latest=version == state.version and not state.retired,
                notice=f"Published v{version}: production serves it now." if published
                and version == state.version else None,
                crumbs=[("Agents", "/"), (agent_id, f"/agents/{agent_id}"),
                        ("History", f"/agents/{agent_id}/history"), (f"v{version}", None)])


def _conflict(clash: Mapping[str, Any]) -> dict[str, Any]:
    return {"path": clash.get("path"), **{
        key: html.side(clash.get(key), bool(clash.get(f"{key}_absent")) or key not in clash)
        for key in ("published", "staging", "reverted_to")}}


def preview_context(request: Request, store: Any, agent_id: str, action: str, number: str
                    ) -> dict[str, Any]:
    """What preview.html needs: both diffs, the conflicts, the staging version previewed,
    and whether the viewer may confirm."""
    from agentstage.server.auth import powers
    from agentstage.server.page_actions import staging_etag

    if action not in ("revert", "restore"):
        raise UsageError(f"action must be revert or restore, not {action!r}",
                         hint="add ?action=revert or ?action=restore")
    etag = staging_etag(store, agent_id)
    found = api_ops.preview(store, agent_id, action, number)
    version = _version(found.get("tag")) or 0
    may_edit, _may_publish = powers(request, store, request.state.caller, agent_id)
    return dict(agent=agent_id, action=action, version=version, etag=etag,
                preview=found, staging=html.review(found["staging"]),
                production=html.review(found["production"]),
                conflicts=[_conflict(c) for c in found.get("conflicts") or []],
                may_edit=may_edit, reason="", error=None,
                crumbs=[("Agents", "/"), (agent_id, f"/agents/{agent_id}"),
                        ("History", f"/agents/{agent_id}/history"),
                        (f"v{version}", f"/agents/{agent_id}/history/{version}"),
                        (f"Preview {action}", None)])


@router.get("/agents/{agent_id}/history/{number}/preview")
def preview_page(request: Request, store: StoreDep, _viewer: PageReaderDep, agent_id: str,
                 number: str, action: str = "revert") -> Response:
    """What reverting (or restoring) a publish would do: staging now against after, and
    production after the next publish; conflicts named. Nothing is written; the confirm
    form (when there is no conflict and the viewer may edit) posts the revert."""
    return page(request, "preview.html", **preview_context(request, store, agent_id, action,
                                                           number))


# the forms and the login, before the catch-all below (routes match in order)
router.include_router(page_session.router)
router.include_router(page_actions.router)
router.include_router(page_edit.router)


@router.get("/agents")
def agents_redirect() -> Response:
    return secured(Response(status_code=307, headers={"Location": "/"}))


@router.get("/agents/{rest:path}")
def no_such_page(request: Request, rest: str) -> Response:
    raise NotFound("no such page", hint="start from the list of agents")
