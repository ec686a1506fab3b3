"""The event stream: one `publish` event per publish, whoever made it (this server, the CLI
on the same repository, or a `git push` into it), within a second.

One watcher per server, not per client: a thread that looks every POLL_SECONDS at the few
files and directories a publish changes (production refs, packed-refs, the tags and the
remotes' production directories, the config), lists the refs only when one of them moved,
and every FULL_SCAN_SECONDS lists every tag anyway. The served repository's own tags are
the truth: a new `refs/tags/<agent>/v<N>` is a publish. Each is read once, as the history
reads it, and sent to every open stream as the same bytes. An event waits, a moment at
most (SETTLE_SECONDS), for its production ref to move (a publish writes its tag first), and
in a repository with the server hook for the note of who pushed it (`pushed_by`, written
just after a push lands): when the note comes later, the event says null where the history
says who. The watcher also tells the delivery cache (server/delivery.py) which agents
moved, and hands each publish to the webhooks' delivery worker (webhooks.py), which is why
the server starts it at once rather than at its first use.

A stream replays, with `Last-Event-ID` (or `?last_event_id=`), the publishes after that
one: publishes are ordered by their tag's time, then agent and version. A tag's time has
whole seconds, and publishes of other agents in the same second as the one named are
replayed too (their order within the second is not known), so a client may see one again:
an event id is the publish's tag, the same each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from agentstage import api_ops
from agentstage.agents import VERSION_RE
from agentstage.errors import AgentstageError, InvalidConfig, UsageError
from agentstage.ids import is_agent_id
from agentstage.server.auth import reader
from agentstage.server.responses import ERRORS
from agentstage.store import PRODUCTION_PREFIX, TAG_PREFIX, Store

log = logging.getLogger("agentstage.server")

POLL_SECONDS = 0.15
FULL_SCAN_SECONDS = 5.0
SETTLE_SECONDS = 0.5  # a new tag waits at most this long for its production ref to move,
# and in a repository with the server hook, for the note of who pushed it
GIVE_UP_SECONDS = 10.0  # a new tag whose history entry cannot be read is tried this long
RACY_SECONDS = 0.1  # a stat this close to a change may miss the next one (same clock tick)
KEEPALIVE_SECONDS = 15.0
RETRY_MS = 2000
BACKLOG_LIMIT = 1000  # events waiting for one slow stream; past it, the stream ends
REMOTE_PRODUCTION = re.compile(r"refs/remotes/[^/]+/production/([^/]+)")

Key = tuple[datetime, str, int]


@dataclass(frozen=True)
class Event:
    """One publish as the stream sends it."""

    tag: str
    key: Key
    frame: bytes

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Event:
        tag = str(entry["tag"])
        agent, version = split_tag(tag)
        data = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))  # one line
        frame = f"id: {tag}\nevent: publish\ndata: {data}\n\n".encode()
        return cls(tag, (datetime.fromisoformat(entry["published_at"]), agent, version), frame)


def split_tag(tag: str) -> tuple[str, int]:
    """`support-bot/v3` -> ("support-bot", 3); a UsageError for anything else."""
    agent, _, version = tag.partition("/")
    if not is_agent_id(agent) or not VERSION_RE.fullmatch(version):
        raise UsageError(f"{tag[:200]!r} is not an event id: event ids are publish tags, "
                         "<agent>/v<N>",
                         hint="send the id of the last event received (Last-Event-ID), or "
                              "none")
    return agent, int(version[1:])


_CLOSE = object()  # tells a stream to end


class Stream:
    """One open event stream: a queue on the event loop it was opened on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[object] = asyncio.Queue()

    def offer(self, item: object) -> bool:
        """Give *item* to the stream from any thread; False when its loop is gone."""
        try:
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def _put(self, item: object) -> None:
        if self.queue.qsize() >= BACKLOG_LIMIT:  # the client reconnects and replays
            item = _CLOSE
        self.queue.put_nowait(item)


class Events:
    """The watcher of one served repository, and its open streams."""

    def __init__(self, repo: str, forget: Callable[[set[str] | None], None],
                 on_publish: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.repo = repo
        self.forget = forget  # the delivery cache's: these agents moved (None: everything)
        self.on_publish = on_publish  # the webhooks' worker: takes each entry, never blocks
        self.stopping = False
        self._streams: set[Stream] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None  # the watcher thread's own
        self._common = Path()
        self._remotes: list[str] = []
        self._seen: tuple[Any, ...] = ()
        self._racy = False
        self._full_at = 0.0
        self._production: dict[str, str | None] = {}
        self._tags: dict[str, set[str]] = {}
        self._pending: dict[str, float] = {}  # new tags waiting for production to move
        self._emitted = 0
        self._replays: dict[tuple[str, int], list[Event]] = {}
        self._replay_lock = threading.Lock()
        self._problem = ""
        self._noted = False  # the server hook notes who pushed each publish, just after

    # -- the watcher ------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching (once): what the repository holds now is the baseline, and every
        change after this returns is seen. Cheap when already started."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            store = Store.open(self.repo)
            git_dir = store.git_dir
            pointer = git_dir / "commondir"  # a linked work tree keeps refs in the main one
            self._common = (git_dir / pointer.read_text().strip()).resolve() \
                if pointer.is_file() else git_dir
            hooks = Path(store.config("core.hooksPath") or git_dir / "hooks")
            with contextlib.suppress(OSError, UnicodeError):
                self._noted = "agentstage" in (git_dir / hooks / "post-receive").read_text()
            self._seen = self._signature()
            self._production = self._production_refs(store)
            self._tags = self._all_tags(store)
            self._full_at = time.monotonic()
            thread = threading.Thread(target=_watch, args=(weakref.ref(self), self._stop),
                                      name="agentstage-events", daemon=True)
            thread.start()
            self._thread = thread

    def close(self) -> None:
        """End every stream and stop the watcher."""
        self.stop_soon()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def stop_soon(self) -> None:
        """End every open stream now (the server is stopping). Takes no lock, so a signal
        handler may call it."""
        self.stopping = True
        for stream in list(self._streams):
            stream.offer(_CLOSE)

    def _watched_paths(self) -> list[Path]:
        common = self._common
        production = common / PRODUCTION_PREFIX
        paths = [production, common / TAG_PREFIX, common / "packed-refs", common / "config",
                 common / "refs/remotes"]
        if not production.is_dir():  # its first publish makes it in refs/heads
            paths.append(common / "refs/heads")
        paths += [common / "refs/remotes" / r / "production" for r in self._remotes]
        return paths

    def _signature(self) -> tuple[Any, ...]:
        out: list[Any] = []
        now = time.time_ns()
        racy = False
        for path in self._watched_paths():
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
                continue
            out.append((st.st_mtime_ns, st.st_ino, st.st_size))
            racy = racy or now - st.st_mtime_ns < RACY_SECONDS * 1e9
        self._racy = racy
        return tuple(out)

    def poll(self) -> None:
        """One look (the watcher thread calls it every POLL_SECONDS)."""
        if self._store is None:
            self._store = Store.open(self.repo)
        racy = self._racy
        seen = self._signature()
        full = time.monotonic() - self._full_at >= FULL_SCAN_SECONDS
        if seen == self._seen and not racy and not full and not self._pending:
            return
        config_moved = bool(self._seen) and seen[3] != self._seen[3]
        self._seen = seen
        self._scan(self._store, full, config_moved)

    def _production_refs(self, store: Store) -> dict[str, str | None]:
        names = store.ref_names(PRODUCTION_PREFIX)
        remotes = [n for n in store.ref_names("refs/remotes/") if REMOTE_PRODUCTION.fullmatch(n)]
        self._remotes = sorted({n.split("/")[2] for n in remotes})
        return {name: store.ref(name) for name in [*names, *remotes]}

    @staticmethod
    def _tags_of(names: Iterable[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for name in names:
            agent, _, version = name[len(TAG_PREFIX):].partition("/")
            if is_agent_id(agent) and VERSION_RE.fullmatch(version):
                out.setdefault(agent, set()).add(f"{agent}/{version}")
        return out

    def _all_tags(self, store: Store) -> dict[str, set[str]]:
        return self._tags_of(store.ref_names(TAG_PREFIX))

    def _scan(self, store: Store, full: bool, config_moved: bool) -> None:
        production = self._production_refs(store)
        old = self._production
        moved = {name.rpartition("/")[2] for name in production.keys() | old.keys()
                 if production.get(name) != old.get(name)}
        self._production = production
        if full:
            self._full_at = time.monotonic()
            tags = self._all_tags(store)
            looked = set(tags) | set(self._tags)
        else:
            looked = moved | {t.partition("/")[0] for t in self._pending}
            tags = {**self._tags}
            for agent in looked:
                found = self._tags_of(store.ref_names(f"{TAG_PREFIX}{agent}/")).get(agent)
                if found:
                    tags[agent] = found
                else:
                    tags.pop(agent, None)
        now = time.monotonic()
        for agent in looked:
            before, after = self._tags.get(agent, set()), tags.get(agent, set())
            if before != after:
                moved.add(agent)
            for tag in after - before:
                self._pending.setdefault(tag, now)
        self._tags = tags
        if config_moved:
            self.forget(None)  # e.g. the remote staging tracks: production is read anew
        elif moved:
            self.forget(moved)
        if self._pending:
            self._send(store, now)

    def _send(self, store: Store, now: float) -> None:
        """Send the new tags whose production has moved (or that waited long enough)."""
        ready: dict[str, list[tuple[str, datetime]]] = {}
        for tag, since in list(self._pending.items()):
            agent = tag.partition("/")[0]
            try:
                info = store.tag(tag)
            except AgentstageError:  # not a publish record: no event
                info = None
            if info is None:
                del self._pending[tag]
                continue
            targets = {c for name, c in self._production.items()
                       if name.rpartition("/")[2] == agent}
            if info.target in targets or now - since >= SETTLE_SECONDS:
                ready.setdefault(agent, []).append((tag, info.time))
        events: list[tuple[Event, dict[str, Any]]] = []
        for agent, tags in ready.items():
            wanted = {tag for tag, _ in tags}
            try:
                entries = _entries(store, agent, min(when for _, when in tags))
            except AgentstageError as exc:  # e.g. a command writing the checkout right now
                for tag in wanted:
                    if now - self._pending[tag] >= GIVE_UP_SECONDS:
                        log.warning("agentstage: events: no event for %s: %s", tag,
                                    exc.message)
                        del self._pending[tag]
                continue  # the next poll tries again
            for entry in entries:
                tag = entry["tag"]
                if tag not in wanted:
                    continue
                if entry.get("pushed_by") is None and self._noted \
                        and now - self._pending[tag] < SETTLE_SECONDS:
                    wanted.discard(tag)  # its pusher's note may be a moment behind
                    continue
                events.append((Event.of(entry), entry))
            for tag in wanted:  # sent, or not a publish the history shows
                del self._pending[tag]
        if not events:
            return
        events.sort(key=lambda e: e[0].key)
        with self._lock:
            self._emitted += 1
            self._replays.clear()
            streams = list(self._streams)
        for stream in streams:
            for event, _entry in events:
                if not stream.offer(event):
                    self.unsubscribe(stream)
                    break
        if self.on_publish is not None:
            for _event, entry in events:
                self.on_publish(entry)

    # -- the streams ------------------------------------------------------------------------

    def subscribe(self) -> Stream:
        """A stream on the running event loop; every event sent after this reaches it."""
        stream = Stream(asyncio.get_running_loop())
        with self._lock:
            self._streams.add(stream)
        if self.stopping:
            stream.offer(_CLOSE)
        return stream

    def unsubscribe(self, stream: Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def replay(self, last: str) -> list[Event]:
        """The publishes after the one tagged *last*, oldest first (see the module)."""
        agent, version = split_tag(last)
        with self._replay_lock:
            key = (last, self._emitted)
            if key in self._replays:
                return self._replays[key]
            store = Store.open(self.repo)
            try:
                info = store.tag(last)
            except InvalidConfig:
                info = None
            if info is None:
                raise UsageError(f"no publish {last} here, so nothing can be replayed after it",
                                 hint="connect without Last-Event-ID, and read production "
                                      "again")
            start = info.time
            events = []
            for entry in _entries(store, None, start):
                event = Event.of(entry)
                when, other, number = event.key
                if event.tag != last and (when > start or (when == start and (
                        other != agent or number > version))):
                    events.append(event)
            events.sort(key=lambda e: e.key)
            if len(self._replays) >= 64:
                self._replays.clear()
            self._replays[key] = events
            return events


def _entries(store: Store, agent: str | None, since: datetime) -> list[dict[str, Any]]:
    """The history entries of *agent* (None: every agent) published at or after *since*,
    read and checked as GET .../publishes reads them."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api_ops.history_page(store, agent, None, since.isoformat(), None,
                                    api_ops.MAX_PAGE, cursor)
        out += page["publishes"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def _watch(ref: weakref.ref[Events], stop: threading.Event) -> None:
    """The watcher thread: polls until stopped or its server is gone."""
    while not stop.wait(POLL_SECONDS):
        events = ref()
        if events is None:
            return
        try:
            events.poll()
            events._problem = ""
        except Exception as exc:  # a repository mid-change, or gone: said once, tried again
            problem = exc.message if isinstance(exc, AgentstageError) else \
                f"{type(exc).__name__}: {exc}"
            if problem != events._problem:
                log.warning("agentstage: events: the repository could not be read: %s",
                            problem)
                events._problem = problem
        del events


# -- the route ------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v2", tags=["delivery"], dependencies=[Depends(reader)],
                   responses=ERRORS)

STREAM_DOC: dict[int | str, dict[str, Any]] = {200: {
    "description": "Server-Sent Events, endlessly: `event: publish`, `id:` the tag, `data:` "
                   "the history entry (as GET /api/v2/agents/{agent_id}/publishes/"
                   "{change_track_id}); a `: keepalive` comment every 15 s",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.get("/events", response_class=StreamingResponse, responses=STREAM_DOC)
async def events(
    request: Request,
    last_event_id: Annotated[str | None, Query(
        description="For clients that cannot send the Last-Event-ID header")] = None,
    last_event_id_header: Annotated[str | None, Header(
        alias="Last-Event-ID", description="Replay the publishes after this one (its tag)")
    ] = None,
) -> StreamingResponse:
    """Every publish, as it happens (the API's, the CLI's, a push's), within a second."""
    hub: Events = request.app.state.events
    last = last_event_id_header or last_event_id  # the header is the newer on a reconnect
    if last is not None:
        split_tag(last.strip())
    await run_in_threadpool(hub.start)
    stream = hub.subscribe()
    try:
        backlog = await run_in_threadpool(hub.replay, last.strip()) if last else []
    except BaseException:
        hub.unsubscribe(stream)
        raise
    return StreamingResponse(_frames(hub, stream, backlog), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _frames(hub: Events, stream: Stream, backlog: list[Event]) -> AsyncIterator[bytes]:
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        sent = set()
        for event in backlog:
            sent.add(event.tag)
            yield event.frame
        while True:
            try:
                item = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield b": keepalive\n\n"
                continue
            if item is _CLOSE or not isinstance(item, Event):
                return
            if item.tag not in sent:
                yield item.frame
    finally:
        hub.unsubscribe(stream)


__all__ = ["Event", "Events", "router", "split_tag"]
