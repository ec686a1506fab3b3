"""The app factory, and the one place errors become statuses (as exit codes do in `main`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from agentstage import __version__
from agentstage.api_ops import PreconditionFailed
from agentstage.errors import (
    AgentstageError,
    Conflict,
    InvalidConfig,
    NotFound,
    NothingToPublish,
    PolicyDenied,
    Unauthenticated,
    UsageError,
)
from agentstage.replica import Unreachable
from agentstage.server.auth import Auth, PolicyCache
from agentstage.server.guard import Guard, error_body
from agentstage.server.metrics import Metrics, Observe
from agentstage.store import Identity

log = logging.getLogger("agentstage.server")

# The first class an error is an instance of decides: subclasses before their bases.
STATUSES: tuple[tuple[type[AgentstageError], int, str], ...] = (
    (PreconditionFailed, 412, "precondition_failed"),
    (NothingToPublish, 409, "nothing_to_publish"),
    (Conflict, 409, "conflict"),
    (UsageError, 400, "usage"),
    (NotFound, 404, "not_found"),
    (InvalidConfig, 422, "invalid"),
    (PolicyDenied, 403, "policy"),
    (Unauthenticated, 401, "unauthenticated"),
    (Unreachable, 503, "unavailable"),
)


def status_of(exc: AgentstageError) -> tuple[int, str]:
    """The status and error code the API answers *exc* with."""
    return next(((s, c) for cls, s, c in STATUSES if isinstance(exc, cls)), (500, "internal"))


def error_response(exc: AgentstageError) -> JSONResponse:
    status, code = status_of(exc)
    problems = [p.as_json() for p in exc.problems] if isinstance(exc, InvalidConfig) else None
    body = error_body(code, exc.message, exc.hint, problems)
    if exc.payload:  # e.g. {"published": false, "has_changes": false}, a revert's conflicts
        body = {**exc.payload, **body}
    headers = {"WWW-Authenticate": 'Bearer realm="agentstage"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _agentstage_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentstageError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's request validation: a body that is not JSON is a usage error (400); a body
    or parameter of the wrong shape is invalid (422 for bodies, 400 for the URL), each
    problem naming its field."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        detail = (first.get("ctx") or {}).get("error", "")
        return JSONResponse(error_body("usage", f"the body is not valid JSON: {detail}".rstrip(
            ": "), "send a JSON document with Content-Type: application/json"), 400)
    problems = []
    for e in errors:
        loc = [str(part) for part in e.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("body", [])
        problems.append({"file": f"request {where}", "line": None, "path": ".".join(path),
                         "message": _message(e)})
    in_body = all(p["file"] == "request body" for p in problems)
    first = problems[0] if problems else {"path": "", "message": "invalid request"}
    message = f"{first['path'] or 'body'}: {first['message']}" if len(problems) == 1 else \
        f"{len(problems)} problems in the request: " + "; ".join(
            f"{p['path'] or p['file']}: {p['message']}" for p in problems)
    code, status = ("invalid", 422) if in_body else ("usage", 400)
    return JSONResponse(error_body(code, message, None, problems), status)


def _message(error: Any) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field missing"
    return str(error.get("msg", "invalid"))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "usage")
    message = {404: "no such endpoint", 405: "method not allowed here"}.get(
        exc.status_code, str(exc.detail))
    hint = "send a smaller body" if exc.status_code == 413 else "see /docs for the endpoints"
    if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not read the body
        message, hint = _unreadable(exc.__cause__), "send UTF-8 JSON"
    return JSONResponse(error_body(code, message, hint), exc.status_code,
                        headers=getattr(exc, "headers", None))


def _unreadable(cause: BaseException) -> str:
    """Why a body that is JSON by its Content-Type could not be read (json.loads failed
    with something other than a syntax error)."""
    if isinstance(cause, RecursionError):
        return "the body is JSON nested too deeply to read"
    if isinstance(cause, UnicodeError):
        return "the body is not UTF-8 text"
    return "the body cannot be read as JSON (a number with too many digits?)"


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal", f"internal error: {type(exc).__name__}",
                                   "this is a bug in agentstage; please report it"), 500)


def create_app(repo: str | Path, auth: Auth | None = None,
               hosts: Iterable[str] = ("localhost", "127.0.0.1", "::1"),
               remote: str | None = None) -> FastAPI:
    """The app serving *repo* (checkout or bare), answering for the Host names *hosts*;
    with *remote*, a clone that pushes every write there and follows it (replica.py)."""
    from agentstage.server import agents, delivery, events, pages, publishing
    from agentstage.server.fastpath import App, FastPath

    app = App(title="agentstage", version=__version__,
              description="Staging and Production for AI agent configurations, with git "
                          "as the only store (DESIGN.md section 8).")
    app.state.repo = str(repo)
    app.state.auth = auth = auth or Auth("none", _cli_identity(repo))
    app.state.policy = PolicyCache()
    app.state.write_lock = threading.Lock()
    app.state.replica = None
    if remote is not None:
        from agentstage.replica import Replica

        app.state.replica = Replica(str(repo), remote, app.state.write_lock)
        app.state.replica.start()  # caught up before the first request, then every second
    app.state.metrics = metrics = Metrics()
    app.state.delivery = cache = delivery.Cache()
    from agentstage.webhooks import Worker

    app.state.webhooks = worker = Worker(str(repo))  # delivers what the watcher sees
    app.state.events = events.Events(str(repo), cache.forget, worker.offer)
    app.state.events.start()  # every publish after this is delivered to the webhooks
    app.add_exception_handler(AgentstageError, _agentstage_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(agents.router)
    app.include_router(publishing.router)
    from agentstage.server import approvals  # four eyes (README: Trust)

    app.include_router(approvals.router)
    app.include_router(delivery.router)
    app.include_router(pages.router)  # the review pages (section 9)
    app.include_router(events.router)

    @app.get("/healthz", tags=["server"])
    def healthz() -> dict[str, str]:
        """For load balancers: no credentials needed."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["server"], response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        """Prometheus text: requests by route and status, their latency, publishes."""
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    names = frozenset(h.lower() for h in hosts)
    app.add_middleware(Guard, hosts=names)
    # the access log names the identity a request resolved; with --auth none, every
    # request acts as the CLI's identity
    app.add_middleware(Observe, metrics=metrics,
                       identity=str(auth.fixed) if auth.mode == "none" and auth.fixed else "-")
    # in front of everything: what runtimes poll, from memory, after the same checks
    app.fast_path = FastPath(cache, auth, names, metrics)
    return app


def _cli_identity(repo: str | Path) -> Identity:
    """Who --auth none acts as: the CLI's identity (AGENTSTAGE_AUTHOR, git config)."""
    from agentstage.agents import resolve_identity
    from agentstage.store import Store

    return resolve_identity(Store.open(repo), None)
