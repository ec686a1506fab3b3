"""What a local server must refuse from the web pages its user visits, before any route.

A server on loopback is reachable from every page in the user's browser. So: a `Host`
that is not one the server answers for is refused (DNS rebinding); a state-changing
request from another site (`Origin`, `Sec-Fetch-Site`) is refused; under /api/ a body
must be JSON (a cross-site page cannot send that without the browser asking first); and a
body over the cap is refused after reading up to the cap, so the client sees the answer.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentstage.errors import UsageError

MAX_BODY = 1024 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPES = frozenset({"application/json", "application/merge-patch+json"})
UNGUARDED = frozenset({"/healthz"})  # load balancers ask by address, not by name


def error_body(code: str, message: str, hint: str | None = None,
               problems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The error shape of DESIGN.md section 8."""
    error: dict[str, Any] = {"code": code, "message": message}
    if hint:
        error["hint"] = hint
    if problems is not None:
        error["problems"] = problems
    return {"error": error}


async def unicode_body(request: Request) -> None:
    """A dependency of the routes that take a body: JSON whose text is not Unicode (invalid
    UTF-8, or an escaped lone surrogate such as \\ud800, which JSON allows) is refused here,
    naming where, before it can reach a commit message, a tag or a file."""
    body = await request.body()
    if not body:
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the body is not UTF-8 text (byte {exc.start} of it)",
                         hint="send UTF-8 JSON") from None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return  # not JSON: the route's own parsing says so
    where = not_unicode(value)
    if where is not None:
        raise UsageError(f"{where or 'the body'}: the text is not valid Unicode (a lone "
                         "surrogate such as \\ud800)", hint="send UTF-8 JSON")


def not_unicode(value: Any) -> str | None:
    """Where in a JSON value a string (a key or a value) is not valid Unicode: its path
    (`set.description`, `0.text`; "" for the value itself), or None when all are."""
    todo: list[tuple[Any, str]] = [(value, "")]
    while todo:
        item, path = todo.pop()
        if isinstance(item, str) and not _encodes(item):
            return path
        if isinstance(item, dict):
            for key, inner in item.items():
                where = f"{path}.{key}" if path else str(key)
                if not _encodes(key):
                    return f"{path} (a key)" if path else "(a key)"
                todo.append((inner, where))
        elif isinstance(item, list):
            todo.extend((inner, f"{path}.{n}" if path else str(n))
                        for n, inner in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class TooLarge(HTTPException):
    """Raised while a route reads its body; FastAPI passes an HTTPException on as it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


def host_name(value: str) -> str:
    """The name of a Host header without its port: `[::1]:8377` -> `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


class Guard:
    def __init__(self, app: ASGIApp, hosts: frozenset[str], max_body: int = MAX_BODY) -> None:
        self.app = app
        self.hosts = hosts
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        refusal = self.refuse(scope["method"], path, headers, scope.get("raw_path") or b"")
        if refusal is not None:
            await self.answer(send, *refusal)
            return
        length = headers.get("content-length")
        if path.startswith("/api/") and length is not None and length.isdigit() \
                and int(length) > self.max_body:
            await self.drain(receive)
            await self.answer(send, *self.too_large())
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise TooLarge(self.max_body)
            return message

        await self.app(scope, counted, send)

    def refuse(self, method: str, path: str, headers: Headers, raw_path: bytes = b""
               ) -> tuple[int, dict[str, Any]] | None:
        host = headers.get("host")
        if path not in UNGUARDED and (host is None or host_name(host) not in self.hosts):
            return 400, error_body(
                "usage", f"this server does not answer for the host {host!r}",
                "use the address it printed, or start it with --allowed-host NAME for a name "
                "a proxy forwards")
        if path.startswith("/api/") and b"%2f" in raw_path.lower():
            # routing reads the decoded path: an id holding "/" would reach another route
            return 400, error_body(
                "usage", "a path segment holds an encoded '/' (%2F): no id contains one",
                "name an agent, entry or publish by its id (a publish by its number N)")
        if method not in SAFE_METHODS and self.cross_site(headers):
            return 403, error_body(
                "policy", "a state-changing request from another site is refused",
                "send it from a program or from this server's own pages")
        if path.startswith("/api/") and self.has_body(headers):
            kind = headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind not in JSON_TYPES:
                return 415, error_body(
                    "unsupported_media_type",
                    f"request bodies under /api/ must be application/json, not {kind or 'none'}",
                    "send the body with Content-Type: application/json")
        return None

    @staticmethod
    def has_body(headers: Headers) -> bool:
        length = headers.get("content-length")
        return "transfer-encoding" in headers or (length is not None and length != "0")

    @staticmethod
    def cross_site(headers: Headers) -> bool:
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
            return True
        origin = headers.get("origin")
        if origin is None:
            return False
        parts = urlsplit(origin.strip())
        host = headers.get("host", "")
        return parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower()

    def too_large(self) -> tuple[int, dict[str, Any]]:
        return 413, error_body("too_large", f"the request body is over {self.max_body} bytes",
                               "send a smaller body")

    async def drain(self, receive: Receive) -> None:
        """Read the body up to the cap, so the client is not cut off while still sending."""
        seen = 0
        while seen <= self.max_body:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @staticmethod
    async def answer(send: Send, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})
