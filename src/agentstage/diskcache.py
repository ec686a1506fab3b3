"""What agentstage derives from immutable git objects, kept on disk across processes.

A published configuration never changes: its tag names a commit, the commit names the
agent's tree, the tree names the files' bytes. So the slow steps of reading one are done
once per repository, not once per process:

- which tree `agents/<agent>` is in a commit (reading the commit, its root tree and the
  `agents` tree, whose size grows with the number of agents);
- what a tree's files load to: the configuration as `AgentConfig.as_dict()` gives it,
  after every check of the loader passed (YAML parsing and validation, and the import of
  the validation library that a command otherwise pays at start-up);
- whether a commit descends from another, for the pairs asked again and again (history
  checks each publish against the one before it).

Entries live in `<git dir>/agentstage-cache/<format>/`, one small file each in one
directory per kind (creating a file there costs a tenth of a temporary file renamed into
a directory per id prefix). Each entry says whether it is whole: a tree id is 40 or 64
hex digits and "no such agent" is "-", a configuration is a JSON object, an ancestry is
"1" or "0"; so an entry that a crash or a concurrent writer left short (empty, or cut
JSON) is a miss, and two writers of one entry write the same bytes. Only successes are
kept: a tree that breaks
a rule, or files that do not load, are read again each time, so the error names where
they were asked for. The format is a fingerprint of agentstage's version and of the
source of the modules whose rules decide what loads, so a release (or a developer's
change) that loads a file differently never reads an older answer (the first entry
written in a new format removes the others).

The directory holds nothing that is not in the objects: deleting it is always safe, and
`AGENTSTAGE_NO_CACHE=1` turns it off. A read-only repository, a full disk or a corrupt
entry is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import zlib
from pathlib import Path
from typing import Any

CACHE_DIR = "agentstage-cache"
# The modules whose rules decide what a tree's files load to, and which trees are read.
_RULES = ("config.py", "fastload.py", "model.py", "yamlload.py", "ids.py", "layout.py",
          "escape.py", "store.py", "policy.py", "meta.py")
_OID = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_fingerprint: str | None = None
_caches: dict[str, DiskCache | None] = {}
_lock = threading.Lock()


def fingerprint() -> str:
    """agentstage's version and a checksum of the rules' source (computed once)."""
    global _fingerprint
    if _fingerprint is None:
        from agentstage import __version__

        here = Path(__file__).parent
        crc = 0
        for name in _RULES:
            try:
                crc = zlib.crc32((here / name).read_bytes(), crc)
            except OSError:  # a zipped install: the version alone
                continue
        _fingerprint = f"{__version__}-{crc:08x}"
    return _fingerprint


def for_git_dir(git_dir: str | os.PathLike[str]) -> DiskCache | None:
    """The cache of the repository at *git_dir*, None when turned off."""
    if os.environ.get("AGENTSTAGE_NO_CACHE"):
        return None
    key = os.fspath(git_dir)
    with _lock:
        if key not in _caches:
            _caches[key] = DiskCache(Path(key) / CACHE_DIR / fingerprint())
        return _caches[key]


class DiskCache:
    """Entries under *root*: `t/<commit>.<agent>` holds the id of the agent's tree at the
    commit ("-": no such agent), `c/<tree>.<agent>.json` its configuration,
    `a/<commit>.<commit>` whether the first is an ancestor of the second (1 or 0),
    `p/<commit>.json` the policy of a meta commit that validated."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, oid: str, name: str) -> str:
        return f"{self.root}/{kind}/{oid}.{name}"

    def _read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def _write(self, path: str, data: bytes) -> None:
        try:
            try:
                f = open(path, "wb")  # noqa: SIM115  (the retry below opens it again)
            except FileNotFoundError:  # the first entry of its kind
                if not self.root.is_dir():
                    self._forget_other_formats()
                os.makedirs(os.path.dirname(path), exist_ok=True)
                f = open(path, "wb")  # noqa: SIM115
            with f:
                f.write(data)
        except OSError:  # read-only, full, or not ours: only a cache
            pass

    def _forget_other_formats(self) -> None:
        """The entries of other versions of agentstage, which this one never reads."""
        import shutil

        with contextlib.suppress(OSError):
            for other in self.root.parent.iterdir():
                if other != self.root:
                    shutil.rmtree(other, ignore_errors=True)

    def agent_tree(self, commit: str, agent: str) -> str | None:
        """The tree id of `agents/<agent>` at *commit*; "" when the commit has no such
        agent; None when not known."""
        data = self._read(self._path("t", commit, agent))
        if data == b"-":
            return ""
        if data is None or _OID.fullmatch(data) is None:
            return None
        return data.decode("ascii")

    def put_agent_tree(self, commit: str, agent: str, tree: str | None) -> None:
        self._write(self._path("t", commit, agent), (tree or "-").encode("ascii"))

    def ancestry(self, ancestor: str, descendant: str) -> bool | None:
        """Whether commit *ancestor* is an ancestor of *descendant*, None when not known."""
        data = self._read(self._path("a", ancestor, descendant))
        return {b"1": True, b"0": False}.get(data) if data is not None else None

    def put_ancestry(self, ancestor: str, descendant: str, found: bool) -> None:
        self._write(self._path("a", ancestor, descendant), b"1" if found else b"0")

    def policy(self, commit: str) -> dict[str, Any] | None:
        """The policy of meta commit *commit*, as a validation dumped it; None when not
        known."""
        return self._json(self._path("p", commit, "json"))

    def put_policy(self, commit: str, policy: dict[str, Any]) -> None:
        self._write(self._path("p", commit, "json"),
                    json.dumps(policy, separators=(",", ":")).encode("ascii"))

    def _json(self, path: str) -> dict[str, Any] | None:
        data = self._read(path)
        if data is None:
            return None
        try:
            value = json.loads(data)
        except ValueError:  # cut short: a crash, or a writer not done
            return None
        return value if isinstance(value, dict) else None

    def config(self, agent: str, tree: str) -> dict[str, Any] | None:
        """The configuration the files of *tree* load to as *agent*, None when not known."""
        return self._json(self._path("c", tree, agent + ".json"))

    def put_config(self, agent: str, tree: str, config: dict[str, Any]) -> None:
        self._write(self._path("c", tree, agent + ".json"),
                    json.dumps(config, separators=(",", ":")).encode("ascii"))
