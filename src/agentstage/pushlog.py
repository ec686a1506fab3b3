"""Who pushed each publish, as the server knows it: a git note on the publish tag object.

The tagger line of a publish tag is whatever the publisher's `--author` said. The
server's `post-receive` hook knows who the git host authenticated, and writes it beside
each new publish tag as a note under `refs/notes/agentstage-pushers` (one commit per
push, a compare-and-swap like every ref write). Only the server writes that ref: its
`pre-receive` hook refuses pushes to it. Clones get it with `publish` (its fetch takes it
along) or `git fetch origin refs/notes/agentstage-pushers:refs/notes/agentstage-pushers`;
`git notes --ref=agentstage-pushers show support-bot/v3` prints one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from agentstage.errors import Conflict
from agentstage.store import Identity, Store

NOTES_REF = "refs/notes/agentstage-pushers"
# the notes commits' author and committer; the pusher is in the note itself
SERVER = Identity("agentstage server", "agentstage@localhost")
_ATTEMPTS = 8
_NOTE_CAP = 4096  # a note is two short lines; a bigger one is read only this far


def note_text(who: str, when: datetime) -> bytes:
    return f"pushed-by: {who}\npushed-at: {when.isoformat(timespec='seconds')}\n".encode()


def record(store: Store, tags: Iterable[str], who: str, when: datetime | None = None) -> str:
    """Add a note naming *who* to every tag object of *tags* (one commit on the notes
    ref); the new notes commit. Retried when another push's hook moved the ref first."""
    when = when or datetime.now(timezone.utc)
    data = note_text(who, when)
    notes = {oid: data for oid in tags}
    message = f"pushed by {who}\n"
    for _ in range(_ATTEMPTS):
        old = store.ref(NOTES_REF)
        new = store.commit_files(old, notes, message, SERVER)
        try:
            store.update_refs({NOTES_REF: (old, new)}, f"agentstage post-receive: {message}")
            return new
        except Conflict:
            continue
    raise Conflict(f"{NOTES_REF} kept moving while the pusher was recorded",
                   hint="the push landed; the pusher of this publish is not recorded")


class Pushers:
    """Reads the notes of one notes commit (the ref as it was when created)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        commit = store.ref(NOTES_REF)
        self.commit = commit if commit and store.object_kind(commit) == "commit" else None

    def of(self, tag_oid: str | None) -> dict[str, Any] | None:
        """{"by": name, "at": iso time or None} from the note on *tag_oid*, None when none."""
        if self.commit is None or tag_oid is None:
            return None
        for path in (tag_oid, f"{tag_oid[:2]}/{tag_oid[2:]}",
                     f"{tag_oid[:2]}/{tag_oid[2:4]}/{tag_oid[4:]}"):  # git notes' fan-outs
            data = self.store.file_at(self.commit, path)
            if data is not None:
                return _parse(data[:_NOTE_CAP])
        return None


def _parse(data: bytes) -> dict[str, Any] | None:
    fields: dict[str, str] = {}
    for line in data.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("pushed-by", "pushed-at"):
            fields.setdefault(key.strip(), value.strip()[:200])
    by = fields.get("pushed-by")
    return {"by": by, "at": fields.get("pushed-at")} if by else None
