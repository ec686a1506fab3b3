"""What every page shares: the route class that turns any error into an HTML page with the
API's status (never a traceback), the security headers, and `page()`, which renders a
template with the viewer, their role and the CSRF token of the page's forms."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from agentstage import __version__, html
from agentstage.errors import AgentstageError, InvalidConfig, Unauthenticated, UsageError
from agentstage.server.auth import Auth

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
TITLES = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found",
          405: "Not allowed here", 409: "Conflict", 412: "Changed meanwhile",
          413: "Too large", 415: "Unsupported", 422: "Invalid configuration",
          500: "Internal error"}
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
            except Unauthenticated as exc:
                if request.app.state.auth.mode == "tokens":
                    from agentstage.server.page_session import login_redirect

                    return login_redirect(request)
                return error_page(request, exc)
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


R = TypeVar("R", bound=Response)


def secured(response: R) -> R:
    response.headers.update(HEADERS)
    return response


def _viewer(request: Request, agent: Any) -> dict[str, str] | None:
    """The viewer's name, email and role (for *agent*, when the page is about one)."""
    from agentstage.ids import is_agent_id
    from agentstage.server.auth import role
    from agentstage.store import Store

    auth: Auth = request.app.state.auth
    try:
        caller = getattr(request.state, "caller", None)
        if caller is None:
            caller, request.state.session = auth.page_caller(request.headers, request.cookies)
        store = getattr(request.state, "store", None) or Store.open(request.app.state.repo)
        what = role(request, store, caller,
                    agent if isinstance(agent, str) and is_agent_id(agent) else None)
    except AgentstageError:
        return None
    return {"name": caller.identity.name, "email": caller.identity.email, "role": what,
            "session": "cookie" if str(request.state.session).startswith("session:") else ""}


def page(request: Request, template: str, status_code: int = 200, **context: Any
         ) -> HTMLResponse:
    """A page: *template* with what every page shows (the viewer and their role, the
    CSRF token of its forms, the stylesheet)."""
    if "viewer" not in context:
        context["viewer"] = _viewer(request, context.get("agent"))
    session = getattr(request.state, "session", None)
    context.setdefault("csrf_token", request.app.state.auth.csrf_token(session)
                       if context["viewer"] and session is not None else "")
    context.setdefault("crumbs", [])
    context.setdefault("notice", None)
    text = html.render(template, css_version=html.stylesheet_version(), app_version=__version__,
                       auth_mode=request.app.state.auth.mode, **context)
    response = HTMLResponse(text, status_code=status_code, headers={"Cache-Control": "no-store"})
    return secured(response)


def status_of(exc: AgentstageError) -> int:
    """The status the API answers *exc* with."""
    from agentstage.server import app

    return app.status_of(exc)[0]


def problem(exc: AgentstageError, status: int | None = None) -> dict[str, Any]:
    """An error for a template: its status, what happened, what to do, the located
    problems."""
    problems = [{"where": p.file if p.line is None else f"{p.file}:{p.line}", "path": p.path,
                 "message": p.message} for p in exc.problems] \
        if isinstance(exc, InvalidConfig) else []
    return {"status": status or status_of(exc), "message": exc.message, "hint": exc.hint,
            "problems": problems}


def error_page(request: Request, exc: AgentstageError, status: int | None = None
               ) -> HTMLResponse:
    error = problem(exc, status)
    status, problems = error["status"], error["problems"]
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


