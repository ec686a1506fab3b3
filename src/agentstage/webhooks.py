"""Webhooks: each publish, POSTed to the URLs the policy lists, signed as GitHub signs its
webhooks, retried with backoff, and every attempt logged.

The body is the publish's history entry as JSON (the bytes signed, exactly); the headers
`X-Agentstage-Event: publish`, `X-Agentstage-Delivery: <uuid>` and
`X-Agentstage-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, keyed with the value of
the environment variable the policy names (`secret_env`), never with anything in git.

Who delivers: the server's `post-receive` hook for pushes into its repository (in a
detached process, so the push returns at once: `agentstage webhooks deliver --once`), and
`agentstage serve` for every publish its watcher sees (one worker thread, a bounded queue).
A publish is delivered to each URL once per repository: the first of them to claim the
pair (tag, URL) in the delivery log, under a lock, delivers it; the other skips it. A
plain `agentstage publish` with no server delivers nothing.

The log is `agentstage-webhooks.log` in the git directory: JSON lines, one per claim and
per attempt, rotated to `.1` past LOG_LIMIT bytes. A line that is not JSON (what a
delivering process said on stderr) is shown as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import http.client
import json
import logging
import os
import queue
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentstage.meta import WebhookFields as Webhook
from agentstage.meta import read_policy
from agentstage.store import Store

log = logging.getLogger("agentstage.webhooks")

EVENT = "publish"
LOG_FILE = "agentstage-webhooks.log"
LOCK_FILE = "agentstage-webhooks.lock"
LOG_LIMIT = 1 << 20  # bytes; past it the log becomes LOG_FILE.1 (the older .1 is dropped)
ATTEMPTS = 3
BACKOFF = (0.5, 1.0)  # seconds before the 2nd and 3rd attempts
QUEUE_LIMIT = 100  # publishes waiting for serve's delivery worker
_READ_LIMIT = 1 << 16  # of a receiver's answer, read and dropped
_ERROR_LIMIT = 300


def body_of(entry: Mapping[str, Any]) -> bytes:
    """The bytes sent and signed: the history entry as one line of JSON."""
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: bytes, body: bytes) -> str:
    """`sha256=<hex>`: the value of X-Agentstage-Signature-256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def shown_url(url: str) -> str:
    """*url* without user:password, for the log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Delivery:
    """One publish, ready to send to one webhook."""

    id: str
    tag: str
    url: str
    body: bytes
    headers: dict[str, str]
    timeout: float


def build(hook: Webhook, entry: Mapping[str, Any], env: Mapping[str, str]) -> Delivery:
    """The delivery of *entry* to *hook*; a LookupError naming the variable when its secret
    is not set."""
    secret = env.get(hook.secret_env, "")
    if not secret:
        raise LookupError(f"the environment variable {hook.secret_env} (the secret_env of "
                          "this webhook) is not set where the delivery runs")
    body = body_of(entry)
    ident = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "User-Agent": "agentstage-webhooks",
               "X-Agentstage-Event": EVENT, "X-Agentstage-Delivery": ident,
               "X-Agentstage-Signature-256": signature(secret.encode(), body)}
    return Delivery(ident, str(entry["tag"]), hook.url, body, headers, hook.timeout)


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status, or an error (connection, timeout)."""

    status: int | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retry(self) -> bool:
        """Worth another attempt: no answer, or a server error (5xx) or 429."""
        return self.status is None or self.status >= 500 or self.status == 429


def send(delivery: Delivery) -> Outcome:
    """POST *delivery* once (redirects are not followed; *timeout* for each connect and
    read)."""
    started = time.monotonic()
    parts = urlsplit(delivery.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, parts.port, timeout=delivery.timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=delivery.timeout)
    headers = dict(delivery.headers)
    if parts.username is not None:
        import base64

        pair = f"{parts.username}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    try:
        conn.request("POST", path, body=delivery.body, headers=headers)
        response = conn.getresponse()
        response.read(_READ_LIMIT)
        return Outcome(response.status, None, time.monotonic() - started)
    except TimeoutError:
        return Outcome(None, f"timed out after {delivery.timeout:g} s",
                       time.monotonic() - started)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        text = str(exc) or type(exc).__name__
        return Outcome(None, f"{type(exc).__name__}: {text}"[:_ERROR_LIMIT],
                       time.monotonic() - started)
    finally:
        conn.close()


# -- the log --------------------------------------------------------------------------------


def log_path(git_dir: Path) -> Path:
    return git_dir / LOG_FILE


@contextlib.contextmanager
def _locked(git_dir: Path) -> Iterator[None]:
    with open(git_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _append(git_dir: Path, record: dict[str, Any]) -> None:
    """Add *record* (under the lock: the caller holds it)."""
    path = log_path(git_dir)
    line = json.dumps({"time": _now(), **record}, ensure_ascii=False) + "\n"
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size + len(line) > LOG_LIMIT:
            os.replace(path, path.with_name(LOG_FILE + ".1"))
    with open(path, "a", encoding="utf-8") as out:
        out.write(line)


def append(git_dir: Path, record: dict[str, Any]) -> None:
    with _locked(git_dir):
        _append(git_dir, record)


def _lines(git_dir: Path) -> list[str]:
    path = log_path(git_dir)
    out: list[str] = []
    for name in (path.with_name(LOG_FILE + ".1"), path):
        with contextlib.suppress(FileNotFoundError):
            out += name.read_text(encoding="utf-8", errors="replace").splitlines()
    return out


def read_log(git_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The log's records, newest first (at most *limit*). A line that is not a JSON object
    becomes {"message": line}."""
    records = []
    for line in reversed(_lines(git_dir)):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        records.append(record if isinstance(record, dict) else {"message": line[:1000]})
        if limit is not None and len(records) >= limit:
            break
    return records


def claim(git_dir: Path, tag: str, url: str, by: str) -> bool:
    """Take the delivery of *tag* to *url* (False: someone did before, see the module)."""
    shown = shown_url(url)
    with _locked(git_dir):
        for line in _lines(git_dir):
            if f'"{tag}"' in line and '"claimed"' in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("outcome") == "claimed" and \
                        record.get("tag") == tag and record.get("url") == shown:
                    return False
        _append(git_dir, {"tag": tag, "url": shown, "event": EVENT, "attempt": 0,
                          "outcome": "claimed", "by": by})
    return True


# -- delivering -----------------------------------------------------------------------------


def deliver(git_dir: Path, hook: Webhook, entry: Mapping[str, Any], by: str,
            env: Mapping[str, str] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> bool:
    """Deliver *entry* to *hook*, ATTEMPTS times at most, logging each attempt; True when
    the receiver took it (2xx). Never raises for the receiver's sake."""
    tag, url = str(entry.get("tag")), shown_url(hook.url)
    base = {"tag": tag, "url": url, "event": EVENT, "by": by}
    try:
        delivery = build(hook, entry, os.environ if env is None else env)
    except LookupError as exc:
        append(git_dir, {**base, "delivery": None, "attempt": 1, "outcome": "failed",
                         "status": None, "error": str(exc), "seconds": 0.0})
        return False
    for attempt in range(1, ATTEMPTS + 1):
        outcome = send(delivery)
        last = outcome.ok or not outcome.retry or attempt == ATTEMPTS
        verdict = "delivered" if outcome.ok else "failed" if last else "retrying"
        if outcome.status is not None and not outcome.ok and outcome.error is None:
            error: str | None = f"HTTP {outcome.status}"
        else:
            error = outcome.error
        append(git_dir, {**base, "delivery": delivery.id, "attempt": attempt,
                         "outcome": verdict, "status": outcome.status, "error": error,
                         "seconds": round(outcome.seconds, 3)})
        if last:
            return outcome.ok
        sleep(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)])
    return False


def hooks_for(store: Store) -> list[Webhook]:
    """The webhooks of the policy in force that take publishes."""
    policy = read_policy(store)
    return [h for h in policy.webhooks if EVENT in h.events] if policy else []


def entry_of(store: Store, tag: str) -> dict[str, Any]:
    """The history entry of the publish *tag* (a NotFound or UsageError when it is not
    one)."""
    from agentstage.api_ops import publish_entry
    from agentstage.errors import UsageError

    agent, _, version = tag.partition("/")
    if not version.startswith("v") or not version[1:].isdigit():
        raise UsageError(f"{tag!r} is not a publish tag (<agent>/v<N>)")
    return publish_entry(store, agent, version[1:])


def deliver_publish(store: Store, entry: Mapping[str, Any], by: str, once: bool = True,
                    hooks: Iterable[Webhook] | None = None) -> list[dict[str, Any]]:
    """Deliver one publish to every webhook of the policy; with *once*, only to those no
    one has claimed it for. [{"url", "delivered": bool or None (skipped)}]."""
    tag = str(entry["tag"])
    out: list[dict[str, Any]] = []
    for hook in hooks_for(store) if hooks is None else hooks:
        if once and not claim(store.git_dir, tag, hook.url, by):
            out.append({"tag": tag, "url": shown_url(hook.url), "delivered": None})
            continue
        if not once:
            append(store.git_dir, {"tag": tag, "url": shown_url(hook.url), "event": EVENT,
                                   "attempt": 0, "outcome": "redelivery", "by": by})
        out.append({"tag": tag, "url": shown_url(hook.url),
                    "delivered": deliver(store.git_dir, hook, entry, by)})
    return out


def start_background(store: Store, tags: Iterable[str]) -> bool:
    """Hand the deliveries of *tags* to a detached `agentstage webhooks deliver --once`
    (its own session; its stderr goes to the log), when the policy lists webhooks; whether
    one was started. The caller returns at once: git's push waits for nothing of it."""
    tags = list(tags)
    if not tags or not hooks_for(store):
        return False
    git_dir = store.git_dir
    args = [sys.executable, "-m", "agentstage", "-C", str(git_dir), "webhooks", "deliver",
            "--once", "--by", "post-receive", *tags]
    env = {k: v for k, v in os.environ.items()
           if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_QUARANTINE_PATH",
                        "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES")}
    with open(log_path(git_dir), "a", encoding="utf-8") as errors:
        subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=errors, cwd=str(git_dir), env=env, start_new_session=True,
                         close_fds=True)
    return True


class Worker:
    """serve's delivery worker: one thread, a bounded queue of history entries. offer()
    never blocks; a publish that finds the queue full is logged as dropped."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._store: Store | None = None
        self.git_dir: Path | None = None

    def offer(self, entry: dict[str, Any]) -> None:
        self._start()
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            log.warning("agentstage: webhooks: %s not delivered: %d publishes are waiting",
                        entry.get("tag"), QUEUE_LIMIT)
            if self.git_dir is not None:
                with contextlib.suppress(OSError):
                    append(self.git_dir, {"tag": entry.get("tag"), "event": EVENT,
                                          "attempt": 0, "outcome": "dropped", "by": "serve",
                                          "error": f"{QUEUE_LIMIT} publishes were waiting"})

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agentstage-webhooks",
                                                daemon=True)
                self._thread.start()

    def close(self, wait: float = 0.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if wait:
            self._thread.join(wait)

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            try:
                if self._store is None:
                    self._store = Store.open(self.repo)
                    self.git_dir = self._store.git_dir
                deliver_publish(self._store, entry, "serve")
            except Exception as exc:  # e.g. a policy mid-change: said, and the next one tried
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                log.warning("agentstage: webhooks: %s not delivered: %s", entry.get("tag"),
                            message)


def text_of(record: Mapping[str, Any]) -> str:
    """One log record as a line of `agentstage webhooks log`."""
    if "message" in record and "outcome" not in record:
        return str(record["message"])
    outcome = str(record.get("outcome"))
    what = f"{record.get('time', '')}  {record.get('tag')}  {record.get('url', '')}"
    if outcome in ("claimed", "redelivery", "dropped"):
        extra = f": {record['error']}" if record.get("error") else ""
        return f"{what}  {outcome} by {record.get('by')}{extra}"
    status = record.get("status")
    answer = f"HTTP {status}" if status is not None else str(record.get("error") or "")
    return (f"{what}  attempt {record.get('attempt')}: {outcome} ({answer}, "
            f"{record.get('seconds', 0)} s) delivery {record.get('delivery')}")
