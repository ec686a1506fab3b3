"""What the server did: one access-log line per request, and /metrics in Prometheus text.

The log line is logfmt (`identity="Ada <ada@example.com>" method=GET path=... status=200
ms=1.4`), values quoted and escaped, so a path or a name cannot start a line of its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from bisect import bisect_left
from collections import Counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("agentstage.access")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Counters kept in memory (they start at zero with the process, as Prometheus expects)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0
        self.count = 0
        self.publishes: Counter[str] = Counter()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, str(status))] += 1
            self.buckets[bisect_left(BUCKETS, seconds)] += 1
            self.seconds += seconds
            self.count += 1

    def published(self, agent: str) -> None:
        with self._lock:
            self.publishes[agent] += 1

    def text(self) -> str:
        with self._lock:
            out = ["# HELP agentstage_http_requests_total HTTP requests answered, by method, "
                   "route and status.",
                   "# TYPE agentstage_http_requests_total counter"]
            for (method, route, status), n in sorted(self.requests.items()):
                out.append(f"agentstage_http_requests_total{{method={_label(method)},"
                           f"route={_label(route)},status={_label(status)}}} {n}")
            out += ["# HELP agentstage_http_request_duration_seconds Time to answer a request.",
                    "# TYPE agentstage_http_request_duration_seconds histogram"]
            total = 0
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], self.buckets, strict=True):
                total += n
                out.append(f'agentstage_http_request_duration_seconds_bucket{{le="{bound}"}} '
                           f"{total}")
            out += [f"agentstage_http_request_duration_seconds_sum {self.seconds:.6f}",
                    f"agentstage_http_request_duration_seconds_count {self.count}",
                    "# HELP agentstage_publishes_total Publishes made through this server.",
                    "# TYPE agentstage_publishes_total counter"]
            for agent, n in sorted(self.publishes.items()):
                out.append(f"agentstage_publishes_total{{agent={_label(agent)}}} {n}")
            return "\n".join(out) + "\n"


def _label(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _quoted(value: str) -> str:
    """A logfmt value: plain when it is simple, else a JSON string (control characters
    escaped)."""
    if value and all(c.isascii() and (c.isalnum() or c in "/-_.:[]{}=?&%+,@") for c in value):
        return value
    return json.dumps(value)


class Observe:
    """Times each request, logs it, and counts it by route (the route's template, so the
    label set stays small)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, identity: str = "-") -> None:
        self.app = app
        self.metrics = metrics
        self.identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            self.metrics.observe(scope["method"], route, status, seconds)
            self.log(scope, status, seconds)

    def log(self, scope: Scope, status: int, seconds: float) -> None:
        state: Any = scope.get("state") or {}
        who = state.get("identity") if isinstance(state, dict) else None
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        query = scope.get("query_string", b"").decode("latin-1")
        access_log.info("identity=%s method=%s path=%s status=%d ms=%.1f",
                        _quoted(who or self.identity), _quoted(scope["method"]),
                        _quoted(path + (f"?{query}" if query else "")), status,
                        seconds * 1000)
