"""Read production from `agentstage serve`: what an agent runtime needs, and nothing else.

The three lines a runtime needs::

    from agentstage.client import Client
    client = Client("http://agents.internal:8377", token=TOKEN, cache_dir="/var/lib/bot")
    for config in client.follow("support-bot"): bot.configure(config)

`follow` yields the agent's production configuration (a dict, the shape of `agentstage
show --env production`) at once, then again each time the agent is published, whoever
publishes it. It listens to the server's event stream (`GET /api/v2/events`), reconnects
by itself with the id of the last event it saw (the server replays what it missed), and
reads production again after each reconnection. Run it in a thread of its own;
`client.close()` ends it.

Or read it when you need it: `client.production("support-bot")` sends the ETag it last saw
(`If-None-Match`), so an unchanged configuration costs the server a 304 and no body.

With `cache_dir`, the client keeps the last production configuration of each agent on
disk (`<cache_dir>/<agent>.json`, replaced atomically), and when the server cannot be
reached (down, restarting, a network cut, a 5xx), `production` and `follow` answer that
copy instead of raising: `config.offline` is then True and `config.problem` says why.
Without a copy, the error is raised (`Unavailable`).

The result is a `Production`: the configuration as a dict, with `agent`, `version`, `tag`,
`commit`, `published_at`, `offline` and `problem` as attributes. Errors the server names
(401 without a token, 404 for an agent never published or retired) raise `ClientError`
with its `status`, `code` and `message`; a 404 also removes the agent's local copy, so a
retired agent is not served from disk. `client.events()` iterates the raw event stream.

Only the standard library: this module works wherever agentstage is installed, and
importing it loads nothing else of agentstage.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from http.client import HTTPResponse

AGENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
READ_TIMEOUT = 45.0  # the server sends a keepalive every 15 s: silence this long is a cut
MAX_RETRY = 30.0  # seconds between reconnections, at most


class ClientError(Exception):
    """An error answer of the server (its `error` object), or no answer at all."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.hint = hint


class Unavailable(ClientError):
    """The server could not be reached or failed (5xx), and there is no local copy."""


class Production(dict[str, Any]):
    """An agent's production configuration, with where it comes from."""

    agent: str
    version: int
    tag: str
    commit: str
    published_at: str | None
    offline: bool  # True: the server could not be reached; this is the local copy
    problem: str | None  # why, when offline (or when the local copy could not be written)

    @classmethod
    def of(cls, view: dict[str, Any], offline: bool = False,
           problem: str | None = None) -> Production:
        config = cls(view.get("config") or {})
        config.agent, config.version = str(view["agent"]), int(view["version"])
        config.tag, config.commit = str(view["tag"]), str(view["commit"])
        config.published_at = view.get("published_at")
        config.offline, config.problem = offline, problem
        return config


class Event(NamedTuple):
    """One event of the stream: `id` is the publish's tag, `data` its history entry."""

    id: str | None
    event: str
    data: Any


class Client:
    """A reader of one server's production (see the module)."""

    def __init__(self, base_url: str, token: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.timeout = timeout
        self._known: dict[str, tuple[str, dict[str, Any]]] = {}  # agent -> (ETag, view)
        self._closed = threading.Event()
        self._streams: set[HTTPResponse] = set()  # open event streams, for close()

    # -- production --------------------------------------------------------------------

    def production(self, agent_id: str) -> Production:
        """The agent's production configuration: from the server (a 304 when it has not
        changed since the last call), or, when the server cannot be reached, the local
        copy (`offline` True); raises ClientError for an error the server names, and
        Unavailable when there is neither an answer nor a copy."""
        if not AGENT_ID.fullmatch(agent_id):
            raise ValueError(f"invalid agent id {agent_id!r}")
        known = self._known.get(agent_id) or self._load(agent_id)
        headers = {"Accept": "application/json"}
        if known is not None:
            headers["If-None-Match"] = known[0]
        try:
            try:
                status, reply, body = self._get(f"/api/v2/agents/{agent_id}/production",
                                                headers)
            except ClientError as exc:
                if exc.status == 404:  # never published, or retired: no copy to fall back on
                    self._forget(agent_id)
                raise
            if status == 304 and known is not None:
                self._known[agent_id] = known
                return Production.of(known[1])
            try:
                view = json.loads(body)
                config = Production.of(view)
            except (ValueError, KeyError, TypeError, AttributeError):
                raise Unavailable(f"{self.base_url} answered with something that is not a "
                                  "production configuration") from None
        except Unavailable as exc:
            if known is None:
                raise
            return Production.of(known[1], offline=True, problem=exc.message)
        etag = reply.get("etag")
        if etag:
            self._known[agent_id] = (etag, view)
            try:
                self._save(agent_id, etag, view)
            except OSError as exc:  # the answer stands; the copy is what failed
                config.problem = f"the local copy could not be written: {exc}"
        return config

    def _get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of a 2xx or 304; ClientError for a
        4xx, Unavailable for no answer or a 5xx."""
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.base_url + path, headers=self._auth(headers))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _lower(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                body = exc.read()
                if exc.code == 304:
                    return 304, _lower(exc.headers.items()), body
                raise _error(exc.code, body) from None
        except (OSError, ValueError) as exc:  # URLError, refused, reset, timed out
            raise Unavailable(f"cannot reach {self.base_url}: {_reason(exc)}") from None

    def _auth(self, headers: dict[str, str]) -> dict[str, str]:
        if self.token:
            return {**headers, "Authorization": f"Bearer {self.token}"}
        return headers

    def _path(self, agent_id: str) -> Path | None:
        return self.cache_dir / f"{agent_id}.json" if self.cache_dir is not None else None

    def _load(self, agent_id: str) -> tuple[str, dict[str, Any]] | None:
        path = self._path(agent_id)
        if path is None:
            return None
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            etag, view = saved["etag"], saved["production"]
            if not isinstance(etag, str) or not isinstance(view, dict) \
                    or view.get("agent") != agent_id:
                return None
            Production.of(view)  # the fields it needs are there
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none yet, or not one of ours: the server's answer replaces it
        return etag, view

    def _forget(self, agent_id: str) -> None:
        self._known.pop(agent_id, None)
        path = self._path(agent_id)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def _save(self, agent_id: str, etag: str, view: dict[str, Any]) -> None:
        """Write the copy atomically: a reader sees the old one or the new one, whole."""
        path = self._path(agent_id)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"etag": etag, "production": view}, ensure_ascii=False)
        fd, temp = tempfile.mkstemp(prefix=f".{agent_id}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    # -- events ------------------------------------------------------------------------

    def events(self, last_event_id: str | None = None) -> Iterator[Event]:
        """The server's events, as they come, forever: reconnects after a cut (waiting as
        the server asks, `retry:`) with the id of the last event seen, so none is missed.
        Raises ClientError when the server refuses (401, 400), and ends on `close()`."""
        return self._events(last_event_id, None)

    def _events(self, last_event_id: str | None,
                connected: Callable[[], None] | None) -> Iterator[Event]:
        from http.client import HTTPException

        retry = 2.0
        while not self._closed.is_set():
            try:
                response = self._open_stream(last_event_id)
            except Unavailable:
                self._closed.wait(retry)
                retry = min(retry * 2, MAX_RETRY)
                continue
            try:
                if connected is not None:
                    connected()
                for event in _parse(response):
                    if self._closed.is_set():
                        return
                    if event.event == "retry":
                        retry = max(0.1, int(event.data) / 1000)
                        continue
                    if event.event == "comment":
                        continue
                    if event.id is not None:
                        last_event_id = event.id
                    yield event
                    retry = min(retry, 2.0)
            except (OSError, ValueError, HTTPException):  # cut, or silent for too long
                pass
            finally:
                self._streams.discard(response)
                response.close()
            if not self._closed.is_set():
                self._closed.wait(retry)

    def _open_stream(self, last_event_id: str | None) -> HTTPResponse:
        import urllib.error
        import urllib.request

        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        request = urllib.request.Request(self.base_url + "/api/v2/events",
                                         headers=self._auth(headers))
        try:
            response: HTTPResponse = urllib.request.urlopen(request, timeout=READ_TIMEOUT)
        except urllib.error.HTTPError as exc:
            with exc:
                raise _error(exc.code, exc.read()) from None
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot reach {self.base_url}: {_reason(exc)}") from None
        self._streams.add(response)
        if self._closed.is_set():
            response.close()
            raise Unavailable("closed")
        return response

    def follow(self, agent_id: str) -> Iterator[Production]:
        """The agent's production configuration now, then after each of its publishes
        (see the module). Nothing is yielded while the agent has never been published;
        the local copy is, marked `offline`, while the server cannot be reached."""
        latest: list[Production] = []
        pending: list[Production] = []

        def read() -> None:
            try:
                config = self.production(agent_id)
            except Unavailable:
                return  # no copy either: wait for the server
            except ClientError as exc:
                if exc.status == 404:
                    return  # not published yet, or retired: wait for its next publish
                raise
            if not latest or (config.tag, config.offline) != (latest[-1].tag,
                                                              latest[-1].offline):
                latest[:] = [config]
                pending.append(config)

        read()
        yield from pending
        pending.clear()
        for event in self._events(None, read):
            yield from pending
            pending.clear()
            if event.event == "publish" and isinstance(event.data, dict) \
                    and event.data.get("agent") == agent_id:
                read()
                yield from pending
                pending.clear()
        yield from pending

    def close(self) -> None:
        """End `events` and `follow`, in whatever thread they run."""
        import socket

        self._closed.set()
        for response in list(self._streams):
            fp = getattr(response, "fp", None)
            sock = getattr(getattr(fp, "raw", None), "_sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):  # wakes a read blocked on the stream
                    sock.shutdown(socket.SHUT_RDWR)


def _parse(response: HTTPResponse) -> Iterator[Event]:
    """Server-Sent Events as the WHATWG algorithm reads them (the server ends lines with
    LF); a `retry:` and a comment are passed on as events of their own."""
    data: list[str] = []
    kind, ident = "", None
    while True:
        raw = response.readline()
        if not raw:
            return  # the server ended the stream
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    value: Any = json.loads(text)
                except ValueError:
                    value = text
                yield Event(ident, kind or "message", value)
            data, kind = [], ""
            continue
        if line.startswith(":"):  # a keepalive: passed on, so a reader can stop between
            yield Event(None, "comment", line[1:].strip())
            continue
        name, _, value_text = line.partition(":")
        value_text = value_text[1:] if value_text.startswith(" ") else value_text
        if name == "data":
            data.append(value_text)
        elif name == "event":
            kind = value_text
        elif name == "id" and "\0" not in value_text:
            ident = value_text or None
        elif name == "retry" and value_text.isdigit():
            yield Event(None, "retry", value_text)


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def _error(status: int, body: bytes) -> ClientError:
    """The server's error object as a ClientError (Unavailable for a 5xx)."""
    try:
        error = json.loads(body)["error"]
        message, code, hint = str(error["message"]), error.get("code"), error.get("hint")
    except (ValueError, KeyError, TypeError):
        message, code, hint = f"HTTP {status}", None, None
    kind = Unavailable if status >= 500 else ClientError
    return kind(message, status, code, hint)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason) or type(exc).__name__


__all__ = ["Client", "ClientError", "Event", "Production", "Unavailable"]
