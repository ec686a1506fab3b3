"""The delivery fast path: what runtimes poll, answered from memory before FastAPI.

`GET /api/v2/agents/{agent_id}/production` and `GET /api/v2/production` are what every
runtime asks every few seconds. When the delivery cache (server/delivery.py) holds the
answer, this layer sends it (a 304 for a matching If-None-Match) without reading git,
parsing YAML, routing or crossing a thread pool, after the checks every request gets: the
Host check of server/guard.py, no body, and the caller's credentials (`Auth.caller`). It
counts the request in the metrics and writes its access-log line as Observe does. Anything
else (a miss, another path or method, a request a check refuses) goes on, unchanged, to the
app, which answers it (and fills the cache). `App` is FastAPI with this in front: FastAPI's
and Starlette's own layers cost more than the whole fast answer.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from agentstage.api_ops import matches
from agentstage.errors import AgentstageError
from agentstage.server.auth import Auth
from agentstage.server.delivery import AGENT_ROUTE, LIST_ROUTE, Cache
from agentstage.server.guard import host_name
from agentstage.server.metrics import Metrics, access, logged_path

AGENTS = "/api/v2/agents/"
PRODUCTION = "/production"
PUBLISH = "/publish"


class FastPath:
    """The checks and the answer; `App` calls it before anything else."""

    def __init__(self, cache: Cache, auth: Auth, hosts: frozenset[str],
                 metrics: Metrics) -> None:
        self.cache = cache
        self.auth = auth
        self.hosts = hosts
        self.metrics = metrics

    async def handle(self, scope: Scope, send: Send) -> bool:
        """Answer the request from the cache; False when the app must answer it."""
        if scope["method"] != "GET":
            return False
        path: str = scope["path"]
        if path == LIST_ROUTE:
            answer, route = self.cache.listing, LIST_ROUTE
        elif path.startswith(AGENTS) and path.endswith(PRODUCTION):
            answer, route = self.cache.agents.get(path[15:-11]), AGENT_ROUTE
        else:
            return False
        if answer is None:
            return False
        start = time.perf_counter()
        # the first of repeated headers, as starlette's Headers.get
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        host = headers.get("host")
        if host is None or host_name(host) not in self.hosts \
                or headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            return False
        try:
            caller = self.auth.caller(headers)
        except AgentstageError:  # no or bad credentials: the app says 401
            return False
        wanted = headers.get("if-none-match")
        if wanted is not None and (wanted == answer.etag or matches(wanted, answer.etag[1:-1])):
            status = 304
            await send({"type": "http.response.start", "status": 304,
                        "headers": answer.not_modified})
            await send({"type": "http.response.body", "body": b""})
        else:
            status = 200
            await send({"type": "http.response.start", "status": 200,
                        "headers": answer.headers})
            await send({"type": "http.response.body", "body": answer.body})
        seconds = time.perf_counter() - start
        self.metrics.observe("GET", route, status, seconds)
        access.line(str(caller.identity), "GET", logged_path(scope), status, seconds)
        return True

    def watch(self, scope: Scope, send: Send) -> Send:
        """*send*, or for a publish a *send* that drops the agent's answer as the publish
        is answered: the publisher's next read sees it (the watcher would, a moment
        later)."""
        path: str = scope["path"]
        if scope["method"] != "POST" or not path.endswith(PUBLISH) \
                or not path.startswith(AGENTS):
            return send
        agent = path[15:-8]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.cache.forget({agent})
            await send(message)

        return sending


class App(FastAPI):
    """FastAPI with the fast path in front of everything, its own layers included (they
    cost more than the fast path's answer)."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http":
            if await fast.handle(scope, send):
                return
            send = fast.watch(scope, send)
        await super().__call__(scope, receive, send)
