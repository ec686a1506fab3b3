"""The review pages (DESIGN.md section 9): server-rendered HTML over the same operations the
JSON API calls. Each route reads its GET parameters, calls the operation, and renders a
template of `templates/` through `agentstage.html`; an error becomes an HTML page with the
status the API gives it (never a traceback). Every response forbids framing and script.

Phase 2 adds the forms (publish, revert and restore, staging edits) and the login: their
POST routes go beside these, behind the same `PageRoute`, with a CSRF token in the context
that `page()` builds.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from agentstage import __version__, api_ops, html
from agentstage.errors import AgentstageError, InvalidConfig, NotFound, UsageError
from agentstage.server.auth import ReaderDep, StoreDep

log = logging.getLogger("agentstage.server")

# No script at all, no framing, nothing from elsewhere: the pages are documents.
CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; style-src 'self'; "
       "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: a form post must carry its Origin for the guard
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
PAGE_SIZE = 100  # agents per page of the list
TITLES = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found",
          405: "Not allowed here", 409: "Conflict", 412: "Changed meanwhile",
          413: "Too large", 415: "Unsupported", 422: "Invalid configuration",
          500: "Internal error"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
BARE_ERROR = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Internal "
              "error · agentstage</title></head><body><main><h1>Internal error</h1><p>This is a "
              "bug in agentstage; please report it.</p><p><a href=\"/\">All agents</a></p>"
              "</main></body></html>")


class PageRoute(APIRoute):
    """A page route: whatever goes wrong becomes an HTML error page with the API's status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await answer(request)
            except Exception as exc:  # the error page itself failed: a bare page, still HTML
                log.exception("error page failed on %s", request.url.path, exc_info=exc)
                return secured(HTMLResponse(BARE_ERROR, status_code=500))

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except AgentstageError as exc:
                return error_page(request, exc)
            except HTTPException as exc:
                return error_page(request, UsageError(str(exc.detail)), exc.status_code)
            except RequestValidationError as exc:
                return error_page(request, UsageError(f"bad parameters: {exc.errors()!r}"), 400)
            except Exception as exc:  # a bug: logged with its traceback, never shown
                log.exception("internal error on %s %s", request.method, request.url.path,
                              exc_info=exc)
                return error_page(request, AgentstageError(
                    f"internal error: {type(exc).__name__}",
                    hint="this is a bug in agentstage; please report it"), 500)

        return page_handler


router = APIRouter(route_class=PageRoute, include_in_schema=False)


def secured(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def _viewer(request: Request) -> dict[str, str] | None:
    try:
        caller = request.app.state.auth.caller(request.headers)
    except AgentstageError:
        return None
    return {"name": caller.identity.name, "email": caller.identity.email}


def page(request: Request, template: str, status_code: int = 200, **context: Any
         ) -> HTMLResponse:
    """A page: *template* with what every page shows (the viewer, the stylesheet)."""
    context.setdefault("viewer", _viewer(request))
    context.setdefault("crumbs", [])
    text = html.render(template, css_version=html.stylesheet_version(), app_version=__version__,
                       auth_mode=request.app.state.auth.mode, **context)
    response = HTMLResponse(text, status_code=status_code, headers={"Cache-Control": "no-store"})
    return secured(response)  # type: ignore[return-value]


def error_page(request: Request, exc: AgentstageError, status: int | None = None
               ) -> HTMLResponse:
    from agentstage.server.app import STATUSES

    if status is None:
        status = next((s for cls, s, _code in STATUSES if isinstance(exc, cls)), 500)
    problems = [{"where": p.file if p.line is None else f"{p.file}:{p.line}", "path": p.path,
                 "message": p.message} for p in exc.problems] \
        if isinstance(exc, InvalidConfig) else []
    message, hint = exc.message, exc.hint
    if problems:
        message = ("The configuration does not load: " +
                   ("1 problem" if len(problems) == 1 else f"{len(problems)} problems"))
        hint = ("fix the files named above on staging (a commit, agentstage set, or the API), "
                "then load this page again")
    agent = request.path_params.get("agent_id")
    from agentstage.ids import is_agent_id

    response = page(request, "error.html", status, status=status,
                    title=TITLES.get(status, "Error"), message=message, hint=hint,
                    problems=problems, here=request.url.path,
                    agent=agent if isinstance(agent, str) and is_agent_id(agent)
                    and status != 401 else None,
                    crumbs=[("Agents", "/"), (TITLES.get(status, "Error"), None)])
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="agentstage"'
    return response


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


@router.get("/")
def agents_page(request: Request, store: StoreDep, _viewer: ReaderDep, q: str = "") -> Response:
    """Every agent: its production version, its last publish, and staging's changes."""
    from agentstage.agents import agents_table

    number = _int("page", request.query_params.get("page"), 1)
    query = q.strip()
    rows = agents_table(store)
    matched = [r for r in rows if _matches(query, r)] if query else rows
    pages = max(1, math.ceil(len(matched) / PAGE_SIZE))
    number = min(number, pages)
    shown = [api_ops.agent_overview(store, r)
             for r in matched[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]]

    def page_url(n: int) -> str:
        return "/?" + urlencode({k: v for k, v in (("q", query), ("page", str(n))) if v})

    return page(request, "agents.html", rows=shown, q=query, total=len(rows),
                matched=len(matched), page=number, pages=pages, page_url=page_url,
                waiting=sum(1 for r in shown if r["changes"]),
                crumbs=[("Agents", None)])


def _name(store: Any, agent: str) -> str | None:
    try:
        config, _tag = api_ops.staging_view(store, agent)
    except AgentstageError:
        return None
    name = config.get("name")
    return name if isinstance(name, str) else None


@router.get("/agents/{agent_id}")
def review_page(request: Request, store: StoreDep, _viewer: ReaderDep, agent_id: str
                ) -> Response:
    """One agent's review: production beside staging, only the fields that differ."""
    diff, _etag = api_ops.staging_diff(store, agent_id)
    return page(request, "review.html", agent=agent_id, name=_name(store, agent_id),
                review=html.review(diff),
                crumbs=[("Agents", "/"), (agent_id, None)])


def _date_like(value: str) -> bool:
    return not value or _DATE.fullmatch(value) is not None


@router.get("/agents/{agent_id}/history")
def history_page(request: Request, store: StoreDep, _viewer: ReaderDep, agent_id: str,
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
def entry_page(request: Request, store: StoreDep, _viewer: ReaderDep, agent_id: str,
               number: str) -> Response:
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
                crumbs=[("Agents", "/"), (agent_id, f"/agents/{agent_id}"),
                        ("History", f"/agents/{agent_id}/history"), (f"v{version}", None)])


def _conflict(clash: Mapping[str, Any]) -> dict[str, Any]:
    return {"path": clash.get("path"), **{
        key: html.side(clash.get(key), bool(clash.get(f"{key}_absent")) or key not in clash)
        for key in ("published", "staging", "reverted_to")}}


@router.get("/agents/{agent_id}/history/{number}/preview")
def preview_page(request: Request, store: StoreDep, _viewer: ReaderDep, agent_id: str,
                 number: str, action: str = "revert") -> Response:
    """What reverting (or restoring) a publish would do: staging now against after, and
    production after the next publish; conflicts named. Nothing is written."""
    if action not in ("revert", "restore"):
        raise UsageError(f"action must be revert or restore, not {action!r}",
                         hint="add ?action=revert or ?action=restore")
    found = api_ops.preview(store, agent_id, action, number)
    version = _version(found.get("tag")) or 0
    return page(request, "preview.html", agent=agent_id, action=action, version=version,
                preview=found, staging=html.review(found["staging"]),
                production=html.review(found["production"]),
                conflicts=[_conflict(c) for c in found.get("conflicts") or []],
                crumbs=[("Agents", "/"), (agent_id, f"/agents/{agent_id}"),
                        ("History", f"/agents/{agent_id}/history"),
                        (f"v{version}", f"/agents/{agent_id}/history/{version}"),
                        (f"Preview {action}", None)])


@router.get("/agents")
def agents_redirect() -> Response:
    return secured(Response(status_code=307, headers={"Location": "/"}))


@router.get("/agents/{rest:path}")
def no_such_page(request: Request, rest: str) -> Response:
    raise NotFound("no such page", hint="start from the list of agents")
