"""The git store: everything agentstage reads from or writes to git goes through here.

Nothing above this module touches pygit2. Reads of one agent walk only
`agents/<agent>` of one commit; writes build a new commit that replaces only that
subtree; every ref write is a compare-and-swap inside a libgit2 transaction, so a
ref that moved under us is a Conflict, never an overwrite.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import pygit2
from pygit2.enums import FileMode

from agentstage.errors import (
    AgentstageError,
    Conflict,
    InvalidConfig,
    NotFound,
    Problem,
    UsageError,
)
from agentstage.faults import crash_point, pause_point
from agentstage.layout import AGENTS_DIR, agent_dir
from agentstage.worktree import WorkTree, finish_interrupted, index_entries, read_index

if TYPE_CHECKING:
    from agentstage.diskcache import DiskCache

STAGING = "refs/heads/staging"
PRODUCTION_PREFIX = "refs/heads/production/"
TAG_PREFIX = "refs/tags/"

pygit2.settings.enable_fsync_gitdir(True)


def production_ref(agent: str) -> str:
    return f"{PRODUCTION_PREFIX}{agent}"


def tag_ref(agent: str, version: int) -> str:
    return f"{TAG_PREFIX}{agent}/v{version}"


class Identity(NamedTuple):
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class TagInfo(NamedTuple):
    """An annotated tag as read back: who, when, what it says, what it points at."""

    name: str
    target: str
    tagger: Identity
    time: datetime
    message: str


class TreeEntry(NamedTuple):
    name: str
    kind: str  # "tree", "file", "symbolic link" or "submodule"
    oid: str


_MODES = {b"40000": "tree", b"100644": "file", b"100755": "file", b"120000": "symbolic link",
          b"160000": "submodule"}


_PACKED_ID = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_PACKED_TAG = re.compile(rb"^[0-9a-f]{40,64} (refs/tags/[^\n]+)$", re.MULTILINE)


def _bad_tree(where: str, problem: str) -> InvalidConfig:
    return InvalidConfig([Problem(where or "(the root tree)", None, "", problem)],
                         hint="this tree was not written by git; fix the commit that made it "
                              "(git fsck names such objects)")


# -- reading trees strictly, fast ----------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING: Any = object()


_ALL_CACHES: list[Lru[Any, Any]] = []


def clear_caches() -> None:
    """Empty every process-wide cache (for a cold measurement; never needed for
    correctness: their keys name immutable content)."""
    for cache in _ALL_CACHES:
        cache.clear()


class Lru(Generic[K, V]):
    """A bounded map, least recently used out first, safe to share between threads. Each
    value weighs what `put` says (default 1); the total stays under *capacity*. Its
    keys must name immutable content (object ids), so a value never goes stale."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        _ALL_CACHES.append(self)

    def get(self, key: K, default: V | None = None) -> V | None:
        found = self._items.get(key)  # each OrderedDict call is atomic: no lock to read
        if found is None:
            return default
        try:  # noqa: SIM105  (contextlib.suppress: a context manager per hit, a microsecond)
            self._items.move_to_end(key)
        except KeyError:  # dropped by a put meanwhile
            pass
        return found[0]

    def put(self, key: K, value: V, weight: int = 1) -> None:
        if weight > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            self._items[key] = (value, weight)
            self._weight += weight
            while self._weight > self.capacity:
                _key, (_value, dropped) = self._items.popitem(last=False)
                self._weight -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weight = 0

    def __len__(self) -> int:
        return len(self._items)


# Parsed trees by id, weighed by entries (about 200 bytes each): ~80 MB at most.
_TREES: Lru[str, Mapping[str, TreeEntry]] = Lru(400_000)
# (commit, path) -> the id of the tree there, or None: what `_subtree_id` found.
_PATHS: Lru[tuple[str, str], str | None] = Lru(200_000)
# packed-refs by path: (inode, size, mtime), its bytes, its tags grouped by agent.
# (packed-refs path, its (inode, size, mtime), prefix) -> the names found there
_PACKED_SEARCHES: Lru[tuple[str, tuple[int, int, int], str], list[str]] = Lru(100_000)
GROUP_AFTER = 8  # searches of packed-refs before its tags are grouped by agent
_PACKED_FILES: Lru[str, tuple[tuple[int, int, int], bytes, dict[str, list[str]] | None]] = \
    Lru(16)

_MODE_ALTERNATIVES = rb"40000|100644|100755|120000|160000"
_WHOLE_TREE = re.compile(rb"(?:(?:" + _MODE_ALTERNATIVES + rb") [^\0/]+\0.{20})*", re.DOTALL)
_TREE_ENTRY = re.compile(rb"(" + _MODE_ALTERNATIVES + rb") ([^\0/]+)\0(.{20})", re.DOTALL)
_ALL_TREES = re.compile(rb"(?:40000 [^\0/]+\0.{20})*", re.DOTALL)
_TREE_NAME = re.compile(rb"40000 ([^\0/]+)\0.{20}", re.DOTALL)


class _Tree(Mapping[str, TreeEntry]):
    """The entries of a tree that passed every check of `parse_tree`, made into
    TreeEntry values only when asked for (a lookup in a tree of 2,000 agents needs one).
    *found* holds (mode, name, id) per entry; a tree of directories only keeps its bytes
    and raw names instead, and finds an entry's id by its offset."""

    __slots__ = ("_data", "_found", "_index", "_names", "_raws", "_starts")

    def __init__(self, names: list[str], found: list[tuple[bytes, bytes, bytes]] | None,
                 raws: list[bytes] | None = None, data: bytes = b"") -> None:
        self._names = names
        self._found = found
        self._raws = raws
        self._data = data
        self._index: dict[str, int] | None = None
        self._starts: list[int] | None = None

    def __getitem__(self, name: str) -> TreeEntry:
        index = self._index
        if index is None:
            index = self._index = dict(zip(self._names, range(len(self._names)), strict=True))
        n = index[name]
        if self._found is not None:
            mode, _raw, oid = self._found[n]
            return TreeEntry(name, _MODES[mode], oid.hex())
        assert self._raws is not None
        starts = self._starts
        if starts is None:  # entry n starts after n entries of `40000 <name>\0<20 bytes>`
            starts = self._starts = list(accumulate(map(len, self._raws), initial=0))
        at = starts[n] + 27 * n + 7 + len(self._raws[n])
        return TreeEntry(name, "tree", self._data[at:at + 20].hex())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _decoded(raws: list[bytes]) -> list[str] | None:
    """The names as text, None when one is not UTF-8. NUL is never inside a UTF-8
    sequence, so the join decodes iff each name does."""
    try:
        return b"\0".join(raws).decode("utf-8").split("\0") if raws else []
    except UnicodeDecodeError:
        return None


def _in_order(keys: list[bytes], names: list[str]) -> bool:
    """Sorted as git sorts (by *keys*), names unique, none `.` or `..`."""
    unique = set(names)
    return keys == sorted(keys) and len(unique) == len(names) and "." not in unique \
        and ".." not in unique


def parse_tree(data: bytes, where: str) -> Mapping[str, TreeEntry]:
    """The entries of a tree object's raw bytes, read strictly (see `Store._entries`).

    The rules are checked by whole-list operations that run in C: one regular expression
    matching the entries end to end (known modes, names without NUL or `/`, 20-byte ids,
    nothing cut short), then the names decoded at once, compared with their sorted copy and
    counted as a set. A tree that fails any of them is read again entry by entry
    (`parse_tree_slowly`), which names the first problem; the two agree on every input
    (tests/test_speed_caches.py checks it on random and mutated trees)."""
    if _ALL_TREES.fullmatch(data) is not None:  # directories only, as `agents` is
        raws: list[bytes] = _TREE_NAME.findall(data)
        names = _decoded(raws)
        # git sorts a tree's name as if it ended in `/`
        if names is not None and _in_order((b"/\0".join(raws) + b"/").split(b"\0")
                                           if raws else [], names):
            return _Tree(names, None, raws, data)
    elif _WHOLE_TREE.fullmatch(data) is not None:
        found: list[tuple[bytes, bytes, bytes]] = _TREE_ENTRY.findall(data)
        raws = list(map(itemgetter(1), found))
        names = _decoded(raws)
        if names is not None:
            trees = list(map(itemgetter(0), found)).count(b"40000")
            keys = raws if trees == 0 else \
                [raw + b"/" if mode == b"40000" else raw for mode, raw, _oid in found]
            if _in_order(keys, names):
                return _Tree(names, found)
    return parse_tree_slowly(data, where)


def parse_tree_slowly(data: bytes, where: str) -> dict[str, TreeEntry]:
    """The entries of a tree object's raw bytes, read one by one: the first entry that
    breaks a rule is an InvalidConfig that names it."""
    entries: dict[str, TreeEntry] = {}
    size, pos, previous = 20, 0, b""  # SHA-1 ids
    while pos < len(data):
        space = data.find(b" ", pos)
        nul = data.find(b"\0", space + 1)
        if space < 0 or nul < 0 or nul + 1 + size > len(data):
            raise _bad_tree(where, "its bytes are cut short")
        mode, raw_name = data[pos:space], data[space + 1:nul]
        oid_hex = data[nul + 1:nul + 1 + size].hex()
        pos = nul + 1 + size
        kind_name = _MODES.get(mode)
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad_tree(where, f"an entry's name {raw_name!r} is not UTF-8") from None
        shown = f"{where}/{name}" if where else name
        if kind_name is None:
            raise _bad_tree(shown, f"unknown git file mode {mode.decode(errors='replace')}")
        if not raw_name or raw_name in (b".", b"..") or b"/" in raw_name:
            raise _bad_tree(where, f"an entry is named {name!r}, which git never writes")
        key = raw_name + (b"/" if kind_name == "tree" else b"")
        if name in entries:
            raise _bad_tree(shown, "appears twice in its tree (a tool read one, git "
                            "the other)")
        if key <= previous:
            raise _bad_tree(shown, "is out of git's order in its tree")
        previous = key
        entries[name] = TreeEntry(name, kind_name, oid_hex)
    return entries


class Store:
    def __init__(self, repo: pygit2.Repository) -> None:
        self._repo = repo
        self._packed: tuple[tuple[int, int, int], bytes, dict[str, list[str]] | None] | None \
            = None
        self._searches = 0
        self._disk: DiskCache | None = _MISSING

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Store:
        start = os.fspath(path) if path is not None else os.getcwd()
        if not os.path.exists(start):
            raise NotFound(f"no such directory: {start}", hint="check the -C/--repo path")
        found = pygit2.discover_repository(start)
        if found is None:
            raise NotFound(f"not a git repository: {start}",
                           hint="run 'agentstage init' there, or pass -C PATH")
        return cls(pygit2.Repository(found))

    @classmethod
    def init(cls, path: str | os.PathLike[str], bare: bool = False) -> Store:
        repo = pygit2.init_repository(os.fspath(path), bare=bare, initial_head="staging")
        return cls(repo)

    @property
    def is_bare(self) -> bool:
        return bool(self._repo.is_bare)

    @property
    def git_dir(self) -> Path:
        return Path(self._repo.path)

    @property
    def disk_cache(self) -> DiskCache | None:
        """What earlier processes read of this repository's immutable objects (None: off)."""
        if self._disk is _MISSING:
            from agentstage.diskcache import for_git_dir

            self._disk = for_git_dir(self._repo.path)
        return self._disk

    @property
    def workdir(self) -> Path | None:
        return Path(self._repo.workdir) if self._repo.workdir else None

    def config(self, key: str) -> str | None:
        try:
            return str(self._repo.config[key])
        except (KeyError, pygit2.GitError):
            return None

    def identity(self) -> Identity | None:
        name, email = self.config("user.name"), self.config("user.email")
        return Identity(name, email) if name and email else None

    # -- reading refs and objects ----------------------------------------------------------

    def ref(self, name: str) -> str | None:
        """The object a direct ref points at, or None when it does not exist."""
        try:
            ref = self._repo.references.get(name)
        except (pygit2.GitError, ValueError):
            return None
        if ref is None:
            return None
        target = ref.resolve().target
        return str(target)

    def symbolic_target(self, name: str) -> str | None:
        """The ref a symbolic ref *name* finally points to (git follows at most 5 links),
        even when that ref does not exist yet; None when *name* is not symbolic."""
        seen = name
        for _ in range(5):
            try:
                ref = self._repo.references.get(seen)
            except (pygit2.GitError, ValueError):
                break
            if ref is None or not isinstance(ref.target, str):
                break
            seen = ref.target
        return seen if seen != name else None

    def refs(self, prefix: str) -> Iterator[str]:
        """Names of refs under *prefix* (reads the whole ref store: use for listings)."""
        for name in self._repo.references:
            if name.startswith(prefix):
                yield name

    def ref_names(self, prefix: str) -> list[str]:
        """Names of the refs under *prefix* (a directory of refs, ending in `/`), sorted.

        Read from git's ref files: the lines of packed-refs that start with *prefix* (the
        file is parsed once per change of it, then found by bisection) and the loose refs
        in that one directory; so the cost is that of the refs under *prefix*, not of
        every ref, whatever names the repository holds."""
        common = self._common_dir()
        names = set(self._packed_names(common, prefix))
        loose = common / prefix
        for dirpath, dirnames, filenames in os.walk(loose):  # links are not followed
            dirnames[:] = [d for d in dirnames if not d.endswith(".lock")]
            base = Path(dirpath).relative_to(common).as_posix()
            names.update(f"{base}/{f}" for f in filenames if not f.endswith(".lock"))
        return sorted(names)

    def _common_dir(self) -> Path:
        """The directory that holds the refs (a linked work tree's is its main one's)."""
        git_dir = Path(self._repo.path)
        pointer = git_dir / "commondir"
        if pointer.is_file():
            return (git_dir / pointer.read_text().strip()).resolve()
        return git_dir

    def _packed_names(self, common: Path, prefix: str) -> list[str]:
        """The names under *prefix* in packed-refs (read once per change of the file): a
        search of its bytes for `<id> <prefix>`, so Python touches only those lines; after
        a few searches (a listing of every agent, not one command's few), the tag names are
        grouped by their first directory once, so a listing costs one pass, not one per
        agent."""
        path = common / "packed-refs"
        try:
            info = path.stat()
        except FileNotFoundError:
            return []
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        if self._packed is None or self._packed[0] != key:
            shared = _PACKED_FILES.get(str(path))  # another Store of this process read it
            self._packed = shared if shared is not None and shared[0] == key else \
                (key, path.read_bytes(), None)
            _PACKED_FILES.put(str(path), self._packed)
        _key, data, groups = self._packed
        owner = prefix.removeprefix(TAG_PREFIX)
        grouped = prefix.startswith(TAG_PREFIX) and owner.count("/") == 1 and owner[:-1] != ""
        if grouped and groups is None and self._searches >= GROUP_AFTER:
            groups = {}
            for raw in _PACKED_TAG.findall(data):
                name = raw.rstrip(b"\r").decode("utf-8", "replace")
                head = name[:name.find("/", len(TAG_PREFIX)) + 1]
                groups.setdefault(head, []).append(name)
            self._packed = (key, data, groups)
            _PACKED_FILES.put(str(path), self._packed)
        if grouped and groups is not None:
            return list(groups.get(prefix, []))
        self._searches += 1
        memo = (str(path), key, prefix)
        found = _PACKED_SEARCHES.get(memo)
        if found is None:
            found = []
            needle = b" " + prefix.encode()
            at = data.find(needle)  # C's substring search: a regex anchored at `^` tries
            while at >= 0:          # every byte of the file (5 ms at 5,000 tags)
                start = data.rfind(b"\n", 0, at) + 1
                end = data.find(b"\n", at)
                end = len(data) if end < 0 else end
                if _PACKED_ID.fullmatch(data[start:at]):  # `<id> <name>`, not a name's middle
                    found.append(data[at + 1:end].rstrip(b"\r").decode("utf-8", "replace"))
                at = data.find(needle, end)
            _PACKED_SEARCHES.put(memo, found, len(found) + 1)
        return list(found)

    def upstream(self, branch: str = STAGING) -> tuple[str, str] | None:
        """(remote name, remote-tracking ref) that *branch* tracks, None when it tracks none
        (or only a local branch): git's branch.<name>.remote and .merge."""
        short = branch.removeprefix("refs/heads/")
        remote = self.config(f"branch.{short}.remote")
        if not remote or remote == ".":
            return None
        try:
            found = self._repo.branches.local.get(short)
            tracking = found.upstream_name if found is not None else None
        except (pygit2.GitError, KeyError, ValueError):
            tracking = None
        return (remote, str(tracking)) if tracking else None

    def remote_tracking(self, remote: str, ref: str) -> str | None:
        """The name of the remote-tracking ref that a fetch from *remote* maps *ref* (a ref
        on the remote, e.g. refs/heads/production/bot) to; None when no refspec maps it."""
        try:
            found = self._repo.remotes[remote]
            specs = [found.get_refspec(i) for i in range(found.refspec_count)]
        except (KeyError, ValueError, pygit2.GitError):
            return None
        for spec in specs:
            if spec.direction == 0 and spec.src_matches(ref):  # 0: GIT_DIRECTION_FETCH
                return str(spec.transform(ref))
        return None

    def remote_ref(self, remote: str, ref: str) -> str | None:
        """What the last fetch from *remote* saw *ref* pointing at, None when unknown."""
        tracking = self.remote_tracking(remote, ref)
        return self.ref(tracking) if tracking else None

    def resolve_commit(self, rev: str) -> str:
        try:
            obj = self._repo.revparse_single(rev)
            return str(obj.peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise NotFound(f"no commit or ref named {rev!r}",
                           hint="check the name with 'git branch -a' or 'git tag'") from None

    def head_branch(self) -> str | None:
        """The branch checked out in the work tree, if any (None for bare or detached)."""
        if self._repo.is_bare:
            return None
        try:
            head = self._repo.references.get("HEAD")
            # a symbolic ref's target is the name of the ref it points to
            return head.target if head is not None and isinstance(head.target, str) else None
        except pygit2.GitError:
            return None

    def is_ancestor(self, ancestor: str, descendant: str, remember: bool = False) -> bool:
        """Whether *ancestor* is *descendant* or one of its ancestors. With *remember*, the
        answer (which two commit ids fix for ever) is kept on disk for later processes:
        for the pairs read again and again, as history checks each publish against the
        one before."""
        if ancestor == descendant:
            return True
        disk = self.disk_cache if remember else None
        known = disk.ancestry(ancestor, descendant) if disk is not None else None
        if known is not None:
            return known
        found = bool(self._repo.descendant_of(descendant, ancestor))
        if disk is not None:
            disk.put_ancestry(ancestor, descendant, found)
        return found

    def _commit(self, commit: str) -> pygit2.Commit:
        try:
            obj = self._repo[commit]
        except (KeyError, ValueError):
            raise NotFound(f"no commit {commit}") from None
        return obj.peel(pygit2.Commit)

    def commit_info(self, commit: str) -> tuple[str, list[str]]:
        """(message, parent ids) of a commit."""
        c = self._commit(commit)
        return c.message, [str(p) for p in c.parent_ids]

    def walk(self, newest: str, stop: str | None) -> Iterator[tuple[str, str, list[str]]]:
        """(id, message, parent ids) of the commits reachable from *newest* but not from
        *stop*, in no particular order."""
        walker = self._repo.walk(newest, pygit2.enums.SortMode.NONE)
        if stop is not None:
            walker.hide(stop)
        for c in walker:
            yield str(c.id), c.message, [str(p) for p in c.parent_ids]

    def has_commit(self, oid: str) -> bool:
        try:
            return isinstance(self._repo.get(oid), pygit2.Commit)
        except (ValueError, pygit2.GitError):
            return False

    def _blob(self, oid: pygit2.Oid | str) -> bytes:
        blob = self._repo[oid]
        assert isinstance(blob, pygit2.Blob)
        return bytes(blob.data)

    def _entries(self, oid: str, where: str) -> Mapping[str, TreeEntry]:
        """The entries of tree *oid*, read strictly from its raw bytes (libgit2's lookup
        binary-searches and so trusts the order): sorted as git sorts, unique, UTF-8 names
        without `/`, known modes. A tree that breaks a rule is an InvalidConfig naming
        *where*. A tree read once is kept by its id for the whole process (an id names one
        content), in a bounded cache shared by every Store."""
        cached = _TREES.get(oid)
        if cached is not None:
            return cached
        try:
            kind, data = self._repo.odb.read(oid)[:2]
        except (KeyError, ValueError, pygit2.GitError):
            raise InvalidConfig([Problem(where, None, "", f"tree {oid[:12]} is missing from "
                                         "the repository")]) from None
        if kind != pygit2.enums.ObjectType.TREE:
            raise InvalidConfig([Problem(where, None, "", f"object {oid[:12]} is not a tree")])
        entries = parse_tree(bytes(data), where)
        _TREES.put(oid, entries, len(entries) + 1)
        return entries

    def _subtree_id(self, commit: str, path: str) -> str | None:
        """The id of the tree at *path* of *commit*, None when there is nothing at *path*.
        Every tree on the way, and the one at *path*, is read strictly; anything but a real
        directory at *path* (a file, a symbolic link, a submodule) is an InvalidConfig
        naming it. The answer is kept for the process by (commit, path): both name one
        content, so it never changes."""
        key = (commit, path)
        found = _PATHS.get(key, _MISSING)
        if found is not _MISSING:
            return found
        # an agent's directory: known on disk when a process read it before (diskcache.py)
        agent = path[len(AGENTS_DIR) + 1:] if path.startswith(AGENTS_DIR + "/") else "/"
        disk = self.disk_cache if "/" not in agent else None
        if disk is not None:
            known = disk.agent_tree(commit, agent)
            if known is not None:
                _PATHS.put(key, known or None)
                return known or None
        found = self._walk_to(commit, path)
        _PATHS.put(key, found)
        if disk is not None:
            disk.put_agent_tree(commit, agent, found)
        return found

    def _walk_to(self, commit: str, path: str) -> str | None:
        oid = str(self._commit(commit).tree_id)
        walked = ""
        for part in path.split("/"):
            entry = self._entries(oid, walked).get(part)
            walked = f"{walked}/{part}" if walked else part
            if entry is None:
                return None
            if entry.kind != "tree":
                raise InvalidConfig([Problem(walked, None, "", f"is a {entry.kind}, not a "
                                             "directory")],
                                    hint=f"make {walked} a directory of files (git rm it and "
                                         "add the files)")
            oid = entry.oid
        self._entries(oid, walked)
        return oid

    def _subtree(self, commit: str, path: str) -> pygit2.Tree | None:
        """The tree at *path* of *commit* (see `_subtree_id`)."""
        oid = self._subtree_id(commit, path)
        if oid is None:
            return None
        try:
            obj = self._repo[oid]
        except (KeyError, ValueError):
            raise InvalidConfig([Problem(path, None, "", f"tree {oid[:12]} is missing from "
                                         "the repository")]) from None
        return obj if isinstance(obj, pygit2.Tree) else None

    def agent_tree(self, commit: str | None, agent: str) -> str | None:
        """Id of `agents/<agent>` at *commit*: equal ids mean identical directories."""
        if commit is None:
            return None
        return self._subtree_id(commit, agent_dir(agent))

    def agent_files(self, commit: str | None, agent: str) -> dict[str, bytes] | None:
        """The files of `agents/<agent>` at *commit*, or None when it has no such agent."""
        if commit is None:
            return None
        tree = self._subtree_id(commit, agent_dir(agent))
        if tree is None:
            return None
        files: dict[str, bytes] = {}
        problems = []
        for entry in self._entries(tree, agent_dir(agent)).values():
            if entry.kind != "file":
                kind = {"tree": "subdirectories", "symbolic link": "symbolic links"}.get(
                    entry.kind, "submodules")
                problems.append(Problem(f"{agent_dir(agent)}/{entry.name}", None, "",
                                        f"{kind} are not allowed in an agent"))
                continue
            files[entry.name] = self._blob(entry.oid)
        if problems:
            raise InvalidConfig(problems)
        return files

    def agent_file_ids(self, commit: str | None, agent: str) -> dict[str, str] | None:
        """File name -> blob id of `agents/<agent>` at *commit* (None: no such agent): what
        changed between two commits, without reading a file."""
        tree = self._subtree_id(commit, agent_dir(agent)) if commit else None
        if tree is None:
            return None
        return {e.name: e.oid for e in self._entries(tree, agent_dir(agent)).values()}

    def list_agents(self, commit: str | None) -> list[str]:
        """The directories under `agents/` at *commit*, and the links and submodules there
        (which every command then refuses by name)."""
        if commit is None:
            return []
        tree = self._subtree_id(commit, AGENTS_DIR)
        if tree is None:
            return []
        return [e.name for e in self._entries(tree, AGENTS_DIR).values()
                if e.kind != "file"]

    def changed_agents(self, old: str | None, new: str | None) -> list[str]:
        """Agents whose directory differs between two commits (one level of tree compare)."""
        def entries(commit: str | None) -> dict[str, str]:
            tree = self._subtree_id(commit, AGENTS_DIR) if commit else None
            if tree is None:
                return {}
            return {e.name: e.oid for e in self._entries(tree, AGENTS_DIR).values()
                    if e.kind != "file"}
        a, b = entries(old), entries(new)
        return sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))

    def tag(self, name: str) -> TagInfo | None:
        """An annotated tag under refs/tags/, or None when the ref does not exist."""
        oid = self.ref(TAG_PREFIX + name)
        if oid is None:
            return None
        obj = self._repo[oid]
        if not isinstance(obj, pygit2.Tag):
            raise InvalidConfig([Problem(TAG_PREFIX + name, None, "",
                                         "is a lightweight tag, not a publish record")])
        info = _tag_info(obj, TAG_PREFIX + name)._replace(name=name)
        kind = self.object_kind(info.target)
        if kind != "commit":  # e.g. pushed to a server without the hook
            raise InvalidConfig([Problem(TAG_PREFIX + name, None, "", f"points at a "
                                         f"{kind or 'missing object'}, not a commit: not a "
                                         "publish record")])
        return info

    # -- writing objects -------------------------------------------------------------------

    def _signature(self, who: Identity, when: datetime | None = None) -> pygit2.Signature:
        when = when or datetime.now().astimezone()
        offset = when.utcoffset() or timedelta()
        return pygit2.Signature(who.name, who.email, int(when.timestamp()),
                                int(offset.total_seconds() // 60))

    def commit_agent(self, parent: str | None, agent: str, files: Mapping[str, bytes] | None,
                     message: str, who: Identity) -> str:
        """A new commit: *parent*'s tree with `agents/<agent>` replaced by *files*
        (None removes the agent). Refs are not touched."""
        repo = self._repo
        root = self._commit(parent).tree if parent else None
        agents = self._subtree(parent, AGENTS_DIR) if parent else None
        agents_builder = repo.TreeBuilder(agents) if agents is not None else repo.TreeBuilder()
        if files is None:
            if agents_builder.get(agent) is not None:
                agents_builder.remove(agent)
        else:
            agent_builder = repo.TreeBuilder()
            for name, data in sorted(files.items()):
                agent_builder.insert(name, repo.create_blob(data), FileMode.BLOB)
            agents_builder.insert(agent, agent_builder.write(), FileMode.TREE)
        root_builder = repo.TreeBuilder(root) if root is not None else repo.TreeBuilder()
        root_builder.insert(AGENTS_DIR, agents_builder.write(), FileMode.TREE)
        return self.commit_tree(parent, str(root_builder.write()), message, who)

    def commit_tree(self, parent: str | None, tree: str, message: str, who: Identity) -> str:
        sig = self._signature(who)
        parents = [pygit2.Oid(hex=parent)] if parent else []
        oid = self._repo.create_commit(None, sig, sig, message, pygit2.Oid(hex=tree), parents)
        return str(oid)

    def commit_files(self, parent: str | None, files: Mapping[str, bytes], message: str,
                     who: Identity) -> str:
        """A commit of *parent*'s tree with *files* (path -> bytes) added or replaced."""
        repo = self._repo
        index = pygit2.Index()
        if parent:
            index.read_tree(self._commit(parent).tree)
        for path, data in files.items():
            index.add(pygit2.IndexEntry(path, repo.create_blob(data), FileMode.BLOB))
        return self.commit_tree(parent, str(index.write_tree(repo)), message, who)

    def write_tag(self, name: str, target: str, who: Identity, message: str,
                  when: datetime | None = None,
                  sign: Callable[[bytes], bytes] | None = None) -> str:
        """Write an annotated tag object (no ref: the ref is created by a transaction).
        *sign* turns the tag's bytes into a signature appended to them, as `git tag -s`
        does; nothing is written when it raises."""
        sig = self._signature(who, when)
        zone = "-" if sig.offset < 0 else "+"
        offset = abs(sig.offset)
        raw = (
            f"object {target}\ntype commit\ntag {name}\n"
            f"tagger {sig.name} <{sig.email}> {sig.time} "
            f"{zone}{offset // 60:02d}{offset % 60:02d}\n"
            f"\n{message}"
        )
        if not raw.endswith("\n"):
            raw += "\n"
        data = raw.encode()
        if sign is not None:
            data += sign(data)
        return str(self._repo.odb.write(pygit2.enums.ObjectType.TAG, data))

    # -- moving refs -----------------------------------------------------------------------

    def update_refs(self, updates: Mapping[str, tuple[str | None, str | None]],
                    message: str, who: Identity | None = None,
                    expect: Mapping[str, str | None] | None = None) -> None:
        """Move every ref in *updates* (name -> (expected old or None for "absent", new or
        None to delete it)) at once. All refs, and those of *expect* (name -> expected
        value, left as they are), are locked first, then checked: a ref that moved, or
        exists when it should not, is a Conflict and nothing is written."""
        checks = {**(expect or {}), **{name: old for name, (old, _new) in updates.items()}}
        try:
            with self._repo.transaction() as txn:
                for name in sorted(checks):
                    txn.lock_ref(name)
                pause_point("refs:locked")
                for name, old in checks.items():
                    current = self.ref(name)
                    if current != old:
                        raise Conflict(
                            f"{name} moved while this command ran "
                            f"(expected {_short(old)}, found {_short(current)})",
                            hint="nothing was written; run the command again",
                        )
                # pygit2 1.21 cannot pass a Signature here (it hands libgit2 bytes);
                # the reflog takes the repository's identity, the message names who acted.
                note = f"{message} ({who})" if who else message
                for name, (_old, new) in updates.items():
                    if new is None:
                        txn.remove(name)
                    else:
                        txn.set_target(name, pygit2.Oid(hex=new), message=note)
        except AgentstageError:
            raise
        except pygit2.GitError as exc:
            raise _lock_error(exc, self.git_dir) from None

    def move_staging(self, old: str | None, new: str, directory: str, message: str,
                     who: Identity) -> None:
        """Compare-and-swap staging from *old* to *new*. When staging is checked out, the
        files of *directory* (an agent's, or `agents`) follow in the index and work tree;
        uncommitted changes there make it refuse, before anything is written."""
        worktree = self._worktree() if self.head_branch() == STAGING else None
        if worktree is not None:
            lock = self.git_dir / "index.lock"
            if lock.exists():
                raise Conflict(f"the checkout's index is locked: {lock} exists",
                               hint="another git command is running; if none is, the lock is "
                                    f"stale: remove it (rm {lock})")
            try:
                self._check_clean(worktree, directory)
            except (pygit2.GitError, OSError) as exc:  # another command writing it now
                raise Conflict(f"the checkout changed while this command read it: {exc}",
                               hint="nothing was written; run the command again") from None
        self.update_refs({STAGING: (old, new)}, message, who)
        crash_point("staging:after-move")
        if worktree is not None:
            try:
                self._sync_checkout(worktree, old, new, directory)
            except (pygit2.GitError, OSError, AgentstageError) as exc:
                raise Conflict(
                    f"staging moved to {new[:12]}, but the checkout could not follow: {exc}",
                    hint="the next agentstage command on this agent brings the checkout "
                         "in step",
                ) from None

    def head_commit(self) -> str | None:
        try:
            return str(self._repo.head.target)
        except (pygit2.GitError, KeyError):
            return None

    def has_path(self, commit: str, path: str) -> bool:
        try:
            self._commit(commit).tree[path]
        except KeyError:
            return False
        return True

    def _blob_paths(self, commit: str | None, directory: str) -> dict[str, str]:
        tree = self._subtree(commit, directory) if commit else None
        if tree is None:
            return {}
        return {f"{directory}/{e.name}": str(e.id) for e in tree
                if e.filemode != FileMode.TREE}

    def _worktree(self) -> WorkTree | None:
        """The checkout's files and index (every read and write of them goes through it,
        never following a link); None for a bare repository."""
        if self._repo.is_bare or not self._repo.workdir:
            return None
        return WorkTree(self._repo)

    def dirty_paths(self, directory: str) -> list[str]:
        """Files of *directory* whose work tree or index differs from staging's (empty for
        a bare repository)."""
        worktree = self._worktree()
        if worktree is None:
            return []
        return worktree.dirty_paths(directory, self._blob_paths(self.ref(STAGING), directory))

    def _check_clean(self, worktree: WorkTree, directory: str) -> None:
        dirty = worktree.dirty_paths(directory, self._blob_paths(self.ref(STAGING), directory))
        if dirty and self._interrupted_sync(worktree, directory):
            return
        if dirty:
            raise Conflict(
                f"the checkout of staging has uncommitted changes to {', '.join(dirty)}",
                hint="commit or stash them first (git stash), then run the command again",
            )

    def _interrupted_sync(self, worktree: WorkTree, directory: str) -> bool:
        """A command that moved staging and died before the checkout followed leaves the
        index and work tree at staging's parent for *directory*: finish the job, and say so.
        """
        staging = self.ref(STAGING)
        if staging is None:
            return False
        parents = self._commit(staging).parent_ids
        if not parents:
            return False
        return finish_interrupted(worktree, directory,
                                  self._blob_paths(str(parents[0]), directory),
                                  self._blob_paths(staging, directory), self._blob,
                                  staging[:12])

    def interrupted_checkouts(self) -> list[str]:
        """The agent directories of a checkout of staging that a crash left between
        staging's parent and staging (the index at the parent, each file at either side):
        what the next command on that agent, or doctor --repair, completes."""
        worktree = self._worktree()
        staging = self.ref(STAGING)
        if worktree is None or staging is None or self.head_branch() != STAGING:
            return []
        parents = self._commit(staging).parent_ids
        if not parents:
            return []
        parent = str(parents[0])
        found = []
        for agent in self.changed_agents(parent, staging):
            directory = agent_dir(agent)
            try:
                before = self._blob_paths(parent, directory)
                after = self._blob_paths(staging, directory)
                if worktree.staged(directory) == before != after and \
                        worktree.between(before, after):
                    found.append(directory)
            except AgentstageError:
                continue
        return found

    def complete_checkout(self, directory: str) -> bool:
        """Finish an update of *directory* in the checkout that a crash cut short."""
        worktree = self._worktree()
        return worktree is not None and self._interrupted_sync(worktree, directory)

    def _sync_checkout(self, worktree: WorkTree, old: str | None, new: str,
                       directory: str) -> None:
        worktree.sync(directory, self._blob_paths(old, directory),
                      self._blob_paths(new, directory), self._blob)

    # -- for hooks and remotes: the index, quarantined objects, deletions -------------------

    def add_object_dirs(self, directories: Iterable[str]) -> None:
        """Read objects from these directories too, e.g. git's quarantine in pre-receive."""
        for directory in directories:
            if directory:
                self._repo.odb.add_disk_alternate(directory)

    def object_kind(self, oid: str) -> str | None:
        """'commit', 'tree', 'blob' or 'tag'; None when there is no such object."""
        try:
            obj = self._repo[oid]
        except (KeyError, ValueError):
            return None
        return {pygit2.Commit: "commit", pygit2.Tree: "tree", pygit2.Blob: "blob",
                pygit2.Tag: "tag"}.get(type(obj))

    def tag_bytes(self, oid: str) -> bytes | None:
        """The raw bytes of the tag object *oid* (what a signature covers), None when it is
        not a tag."""
        try:
            kind, data = self._repo.odb.read(oid)
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return bytes(data) if kind == pygit2.enums.ObjectType.TAG else None

    def tag_object(self, oid: str) -> TagInfo | None:
        """The annotated tag object *oid* (no ref needed), None when it is not one."""
        try:
            obj = self._repo[oid]
        except (KeyError, ValueError):
            return None
        if not isinstance(obj, pygit2.Tag) or obj.tagger is None:
            return None
        return _tag_info(obj, f"tag object {oid[:12]}")

    def write_tree_tag(self, name: str, tree: str, who: Identity, message: str) -> str:
        """An annotated tag object that points at a tree (an approval names the exact
        content it approves); no ref."""
        sig = self._signature(who)
        offset = abs(sig.offset)
        raw = (f"object {tree}\ntype tree\ntag {name}\n"
               f"tagger {sig.name} <{sig.email}> {sig.time} {'-' if sig.offset < 0 else '+'}"
               f"{offset // 60:02d}{offset % 60:02d}\n\n{message}")
        return str(self._repo.odb.write(pygit2.enums.ObjectType.TAG, raw.encode()))

    def file_at(self, commit: str, path: str) -> bytes | None:
        """The bytes of the file *path* at *commit*, None when there is no such file."""
        try:
            entry = self._commit(commit).tree[path]
        except KeyError:
            return None
        if entry.filemode not in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
            kind = {FileMode.TREE: "directory", FileMode.LINK: "symbolic link"}.get(
                entry.filemode, "submodule")
            raise InvalidConfig([Problem(path, None, "", f"is a {kind}, not a file")],
                                hint=f"make {path} a regular file")
        obj = self._repo[entry.id]
        return bytes(obj.data) if isinstance(obj, pygit2.Blob) else None

    def staged_agents(self, index_file: str | os.PathLike[str] | None = None) \
            -> dict[str, dict[str, bytes] | None]:
        """The agents whose files in the index (default .git/index) differ from HEAD,
        each with its files as staged (None when the commit removes the agent).
        Links, subdirectories and submodules in an agent are an InvalidConfig."""
        prefix = AGENTS_DIR + "/"
        staged: dict[str, dict[str, tuple[str, int]]] = {}
        for path, oid, mode in index_entries(read_index(self.git_dir, index_file), prefix):
            agent, _, rest = path[len(prefix):].partition("/")
            if rest:
                staged.setdefault(agent, {})[rest] = (oid, mode)
        head = self.head_commit()
        committed: dict[str, dict[str, tuple[str, int]]] = {}
        for agent in self.list_agents(head):
            tree = self._subtree(head, agent_dir(agent)) if head else None
            if tree is not None:
                committed[agent] = {name: (oid, mode) for name, oid, mode in _walk_tree(tree, "")}
        out: dict[str, dict[str, bytes] | None] = {}
        problems = []
        for agent in sorted(staged.keys() | committed.keys()):
            entries = staged.get(agent)
            if entries == committed.get(agent):
                continue
            if entries is None:
                out[agent] = None
                continue
            files: dict[str, bytes] = {}
            for name, (oid, mode) in sorted(entries.items()):
                where = f"{agent_dir(agent)}/{name}"
                if "/" in name:
                    problems.append(Problem(where, None, "",
                                            "subdirectories are not allowed in an agent"))
                elif mode not in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
                    kind = "symbolic links" if mode == pygit2.GIT_FILEMODE_LINK else "submodules"
                    problems.append(Problem(where, None, "", f"{kind} are not allowed in an agent"))
                else:
                    blob = self._repo[oid]
                    files[name] = blob.data if isinstance(blob, pygit2.Blob) else b""
            out[agent] = files
        if problems:
            raise InvalidConfig(problems, hint="keep only the agent's YAML files in its directory")
        return out


def _tag_info(obj: pygit2.Tag, where: str) -> TagInfo:
    """An annotated tag's fields, decoded strictly: a name, tagger or message that is not
    UTF-8 (git writes bytes as given) is an InvalidConfig naming the tag, never a crash."""
    tagger = obj.tagger
    if tagger is None:
        raise InvalidConfig([Problem(where, None, "", "the tag has no tagger: not a publish "
                                     "record")])
    try:
        name, message = obj.raw_name.decode(), obj.raw_message.decode()
        who = Identity(tagger.raw_name.decode(), tagger.raw_email.decode())
        when = datetime.fromtimestamp(tagger.time, timezone(timedelta(minutes=tagger.offset)))
    except UnicodeDecodeError:
        raise InvalidConfig([Problem(where, None, "", "the tag's name, tagger or message is "
                                     "not UTF-8: not a publish record")]) from None
    except (OverflowError, OSError, ValueError):
        raise InvalidConfig([Problem(where, None, "", "the tag's time is out of range: not "
                                     "a publish record")]) from None
    return TagInfo(name, str(obj.target), who, when, message)


def _short(oid: str | None) -> str:
    return oid[:12] if oid else "nothing"


def _lock_error(exc: pygit2.GitError, git_dir: Path) -> AgentstageError:
    text = str(exc)
    if ".lock" in text:
        lock = text.split("'")[1] if text.count("'") >= 2 else "a .lock file"
        return Conflict(
            f"a ref is locked: {lock} exists",
            hint="another git or agentstage command is writing it; if none is running, the "
                 "lock is stale: remove it (rm, or agentstage doctor --repair --lock-age 0)",
        )
    return Conflict(f"could not update refs in {git_dir}: {text}",
                    hint="run the command again; if it keeps failing, run 'git fsck'")


def parse_identity(text: str, source: str = "--author") -> Identity:
    """`Name <email>` -> Identity, or a usage error that names where *text* came from:
    an option (`--author`) or an environment variable (`AGENTSTAGE_AUTHOR`)."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        name, _, email = text[:-1].rpartition("<")
        name, email = name.strip(), email.strip()
        if name and email and "<" not in email and "\n" not in text:
            return Identity(name, email)
    example = "Ada Lovelace <ada@example.com>"
    if source.startswith("-"):
        where, hint = source, f'for example {source} "{example}"'
    else:
        where = f"the environment variable {source}"
        hint = (f"set it as {source}='{example}', or unset it to use git's user.name and "
                "user.email")
    raise UsageError(f"invalid identity {text!r} in {where}: expected 'Name <email>'", hint=hint)



def _walk_tree(tree: pygit2.Tree, base: str) -> Iterator[tuple[str, str, int]]:
    """(path, id, mode) of every non-tree entry under *tree*, paths relative to it."""
    for entry in tree:
        path = f"{base}{entry.name}"
        if isinstance(entry, pygit2.Tree):
            yield from _walk_tree(entry, path + "/")
        else:
            yield path, str(entry.id), entry.filemode
