"""The server's API tokens: only their hashes, in one file outside history.

A token is `ast_<id>_<secret>`. The id (public, 12 hex digits) picks the entry, and the
SHA-256 of the secret is compared with `hmac.compare_digest`, so neither the lookup nor the
compare tells an attacker anything about a secret. The file (default
`<git dir>/agentstage-tokens.json`, mode 0600) also holds the key that signs browser
sessions, so servers that share the file share sessions. Every change is made under a lock
and written to a temporary file renamed over the old one: a reader sees the old file or
the new one, never half of one. A running server notices a change within a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agentstage.errors import NotFound, UsageError

TOKENS_FILE = "agentstage-tokens.json"
PREFIX = "ast_"
RECHECK_SECONDS = 0.25  # how often a server looks at the file again (revocations, new tokens)


@dataclass(frozen=True)
class TokenEntry:
    id: str
    name: str
    email: str
    hash: str
    created: str
    expires: str | None

    def expired(self, now: float) -> bool:
        return self.expires is not None and datetime.fromisoformat(self.expires).timestamp() <= now

    def public(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "created": self.created,
                "expires": self.expires, "expired": self.expired(now)}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class TokenFile:
    """The tokens file at *path*: `create`, `entries`, `revoke` for `agentstage token`, and
    `lookup` for every request of a server (cheap: a stat at most every quarter second)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._mutex = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._entries: dict[str, TokenEntry] = {}
        self._session_key = b""

    # -- reading -----------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {"version": 1, "session_key": "", "tokens": []}
        except OSError as exc:
            raise UsageError(f"cannot read the tokens file {self.path}: {exc.strerror}",
                             hint="check its permissions, or name another with --tokens") \
                from None
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
                raise ValueError("not a tokens file")
            for t in doc["tokens"]:
                TokenEntry(**t)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{self.path} is not an agentstage tokens file ({exc})",
                             hint="move it away; 'agentstage token create' makes a new one") \
                from None
        return doc

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._seen is not None and now - self._checked < RECHECK_SECONDS:
            return
        with self._mutex:
            self._checked = now
            try:
                st = os.stat(self.path)
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                key = (0, 0, 0)
            if key == self._seen:
                return
            doc = self._read()
            self._entries = {t["id"]: TokenEntry(**t) for t in doc["tokens"]}
            self._session_key = bytes.fromhex(doc.get("session_key") or "")
            self._seen = key

    def lookup(self, token: str) -> TokenEntry | None:
        """The live entry *token* names; None for an unknown, wrong, revoked or expired one."""
        self._refresh()
        if not token.startswith(PREFIX):
            return None
        ident, _, secret = token[len(PREFIX):].partition("_")
        entry = self._entries.get(ident)
        # compare even when there is no entry, so an unknown id costs what a known one does
        expected = entry.hash if entry is not None else "0" * 64
        if not hmac.compare_digest(_digest(secret), expected) or entry is None:
            return None
        return None if entry.expired(time.time()) else entry

    def live(self, ident: str) -> TokenEntry | None:
        """The entry of the token id *ident* while it is live (not revoked, not expired): a
        browser session made with a token ends when the token does."""
        self._refresh()
        entry = self._entries.get(ident)
        return None if entry is None or entry.expired(time.time()) else entry

    def session_key(self) -> bytes:
        """The key browser sessions are signed with (made with the file)."""
        self._refresh()
        return self._session_key

    def entries(self) -> list[TokenEntry]:
        doc = self._read()
        return [TokenEntry(**t) for t in doc["tokens"]]

    # -- writing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The file's document, for changing under an exclusive lock; written back (atomically,
        mode 0600) when the block ends without an error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            doc = self._read()
            if not doc.get("session_key"):
                doc["session_key"] = secrets.token_hex(32)
            yield doc
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(out, (json.dumps(doc, indent=2) + "\n").encode())
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(tmp, self.path)
        finally:
            os.close(fd)

    def create(self, name: str, email: str, expires_days: int | None) -> tuple[str, TokenEntry]:
        """A new token for the identity *name*: the secret (shown once) and its entry."""
        if not name.strip() or name != name.strip() or any(c in name for c in "<>\n\r\t"):
            raise UsageError(f"invalid token name {name!r}",
                             hint="use the name the policy knows the person by, e.g. alice")
        if "@" not in email or any(c.isspace() or c in "<>" for c in email):
            raise UsageError(f"{email!r} is not an email address",
                             hint="--email alice@example.com")
        if expires_days is not None and expires_days < 1:
            raise UsageError("--expires must be at least 1 day")
        secret = secrets.token_urlsafe(32)
        created = _now()
        with self._locked() as doc:
            taken = {t["id"] for t in doc["tokens"]}
            ident = secrets.token_hex(6)
            while ident in taken:  # pragma: no cover - 48 random bits
                ident = secrets.token_hex(6)
            entry = TokenEntry(ident, name, email, _digest(secret), created.isoformat(),
                               (created + timedelta(days=expires_days)).isoformat()
                               if expires_days else None)
            doc["tokens"].append(entry.__dict__)
        return f"{PREFIX}{ident}_{secret}", entry

    def revoke(self, name_or_id: str) -> list[TokenEntry]:
        """Remove every token of the identity (or the one token id) given; NotFound if none."""
        with self._locked() as doc:
            gone = [t for t in doc["tokens"] if name_or_id in (t["name"], t["id"])]
            if not gone:
                raise NotFound(f"no token for {name_or_id!r} in {self.path}",
                               hint="'agentstage token list' shows the names and ids")
            doc["tokens"] = [t for t in doc["tokens"] if t not in gone]
        return [TokenEntry(**t) for t in gone]


def default_path(git_dir: Path) -> Path:
    return git_dir / TOKENS_FILE
