"""The revert and restore marks pending for a publish, remembered per agent, so that a
publish does not read every commit since the agent was last published.

A publish records which publishes its staging reverts or restores: the commits between
production and staging whose message carries an `Agentstage-Revert:` or
`Agentstage-Restore:` trailer for the agent. Reading every message in that range costs
about 9 µs per pending commit (45 ms for an agent last published 5,000 commits ago).

So each agent's last answer is kept in the git directory: for production P and staging
T, the trailers found in P..T. Asked again for P and a staging S that descends from T,
the answer is that one plus the trailers of T..S, which is usually none or a few
commits; after a publish moves production to T, the range T..S starts empty. Only a
production that is neither (another clone published, or the memo is missing) costs the
full reading once. Whether T is an ancestor of S comes out of the same short walk (a
commit in T..S has T as a parent), and production is an ancestor of staging exactly
when the answer is found this way or by the full walk.

The memo holds nothing that is not in the commits. A missing, corrupt or foreign one is
ignored; it is replaced atomically, and two commands writing at once leave one of two
correct answers.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

from agentstage.store import Store

MEMO_DIR = "agentstage-marks"
REVERT_TRAILER = "Agentstage-Revert: "
RESTORE_TRAILER = "Agentstage-Restore: "
TRAILERS = ((REVERT_TRAILER, "reverts"), (RESTORE_TRAILER, "restores"))
VERSION = 1


@dataclass(frozen=True)
class Mark:
    """A commit's claim to revert or restore *tag* (free text until checked)."""

    commit: str
    parents: tuple[str, ...]
    key: str  # "reverts" or "restores"
    tag: str

    def as_json(self) -> list[Any]:
        return [self.commit, list(self.parents), self.key, self.tag]


def trailers(message: str) -> list[tuple[str, str]]:
    """(key, tag) of each revert or restore trailer of a commit message."""
    found = []
    for line in message.splitlines():
        for trailer, key in TRAILERS:
            if line.startswith(trailer):
                found.append((key, line[len(trailer):].strip()))
    return found


def _read(store: Store, start: str, stop: str | None, prefix: str
          ) -> tuple[bool, list[Mark]]:
    """The marks naming *prefix* on the commits of stop..start, and whether *stop* is an
    ancestor of *start* (True when stop is None)."""
    reached = stop is None or start == stop
    found = []
    for oid, message, parents in store.walk(start, stop):
        reached = reached or stop in parents
        found += [Mark(oid, tuple(parents), k, t) for k, t in trailers(message)
                  if t.startswith(prefix)]
    return reached, found


def _load(path: os.PathLike[str] | str) -> tuple[str, str, list[Mark]] | None:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        if doc.get("version") != VERSION:
            return None
        marks = [Mark(str(c), tuple(str(p) for p in ps), str(k), str(t))
                 for c, ps, k, t in doc["marks"]]
        production, tip = doc["production"], doc["tip"]
        if not isinstance(production, str) or not isinstance(tip, str):
            return None
        return production, tip, marks
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _save(path: os.PathLike[str] | str, production: str, tip: str, marks: list[Mark]) -> None:
    doc = {"version": VERSION, "production": production, "tip": tip,
           "marks": [m.as_json() for m in marks]}
    tmp = f"{os.fspath(path)}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        with open(tmp, "w") as f:
            f.write(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:  # a read-only repository: the memo is only a cache
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def pending_marks(store: Store, agent: str, staging: str, production: str
                  ) -> tuple[bool, list[Mark]]:
    """Whether *production* is an ancestor of *staging*, and the marks naming the agent's
    tags on the commits between them (unchecked; newest walked first)."""
    prefix = agent + "/"
    path = store.git_dir / MEMO_DIR / f"{agent}.json"
    memo = _load(path)
    result: tuple[bool, list[Mark]] | None = None
    if memo is not None:
        known_production, tip, known = memo
        base = known if known_production == production else [] if tip == production \
            else None
        if base is not None and store.has_commit(tip):
            reached, new = _read(store, staging, tip, prefix)
            if reached:
                result = True, new + [m for m in base if m not in new]
    if result is None:
        result = _read(store, staging, production, prefix)
    if result[0] and (memo is None or memo[:2] != (production, staging)):
        _save(path, production, staging, result[1])
    return result
