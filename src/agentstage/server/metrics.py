"""What the server did: one access-log line per request, and /metrics in Prometheus text.

The log line is logfmt (`identity="Ada <ada@example.com>" method=GET path=... status=200
ms=1.4`), values quoted and escaped, so a path or a name cannot start a line of its own.
Lines are written as the `agentstage.access` logger is configured; when that is `serve`'s
own plain stream (`%(asctime)s %(message)s`), they are written to it directly, a batch at
most 50 ms old at a time: a logging call (9 µs on this machine) costs more than the rest of
the delivery fast path's answer (about 5 µs), a buffered line under 1 µs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
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


_PLAIN = re.compile(r"[A-Za-z0-9/\-_.:\[\]{}=?&%+,@]+")


@functools.lru_cache(maxsize=4096)  # identities, methods and paths repeat
def _quoted(value: str) -> str:
    """A logfmt value: plain when it is simple, else a JSON string (control characters
    escaped)."""
    if _PLAIN.fullmatch(value):
        return value
    return json.dumps(value)


LINE = "identity=%s method=%s path=%s status=%d ms=%.1f"
SERVE_FORMAT = "%(asctime)s %(message)s"  # what `serve` configures (server/run.py)
FLUSH_SECONDS = 0.05


class AccessLog:
    """The access-log lines of every request, in the order they were answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._streams: list[logging.StreamHandler[Any]] | None = None
        self._since = 0.0  # when the oldest buffered line was added
        self._second = -1
        self._stamp = ""

    def line(self, identity: str, method: str, path: str, status: int, seconds: float) -> None:
        """Log one request: *identity*, *method*, *path* are quoted here."""
        now = time.time()
        with self._lock:
            if not self._lines:
                self._streams = _direct_streams()
            streams = self._streams
            if streams is not None:
                second = int(now)
                if second != self._second:  # logging.Formatter's default asctime
                    self._second = second
                    self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
                self._lines.append(
                    f"{self._stamp},{int((now - second) * 1000):03d} identity="
                    f"{_quoted(identity)} method={_quoted(method)} path={_quoted(path)} "
                    f"status={status} ms={seconds * 1000:.1f}\n")
                if len(self._lines) == 1:
                    self._since = now
                    self._later()
                    return
                if now - self._since < FLUSH_SECONDS * 4 and len(self._lines) < 4096:
                    return
        if streams is None:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(LINE, _quoted(identity), _quoted(method), _quoted(path),
                                status, seconds * 1000)
            return
        self.flush()  # a timer that never ran (its loop gone), or a very busy server

    def _later(self) -> None:
        with contextlib.suppress(RuntimeError):  # no loop here: the next line or flush()
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write the buffered lines now (a timer does it; `serve` at its end, too)."""
        with self._lock:
            lines, self._lines = self._lines, []
            streams = self._streams
        if not lines or not streams:
            return
        data = "".join(lines)
        for handler in streams:
            handler.acquire()
            try:
                handler.stream.write(data)
                handler.stream.flush()
            except (OSError, ValueError):  # a closed or broken stderr: as logging, go on
                pass
            finally:
                handler.release()


def _direct_streams() -> list[logging.StreamHandler[Any]] | None:
    """The handlers of the access logger when all of them are plain streams formatted as
    `serve` formats them (so a line written there reads as logging would write it); None
    otherwise, and the lines go through logging."""
    if access_log.propagate or access_log.filters or not access_log.handlers \
            or not access_log.isEnabledFor(logging.INFO):
        return None
    out = []
    for handler in access_log.handlers:
        form = handler.formatter
        if type(handler) is not logging.StreamHandler or handler.filters \
                or handler.level > logging.INFO or form is None \
                or type(form) is not logging.Formatter or form._fmt != SERVE_FORMAT \
                or form.datefmt is not None or form.converter is not time.localtime:
            return None
        out.append(handler)
    return out


access = AccessLog()


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
        access.line(who or self.identity, scope["method"], logged_path(scope), status, seconds)


def logged_path(scope: Scope) -> str:
    """The request's path as sent (not decoded) and its query."""
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    query = scope.get("query_string", b"").decode("latin-1")
    return path + (f"?{query}" if query else "")
