"""The work tree and the index of a checkout: every read and write of one goes through here.

Paths are opened one component at a time, relative to the directory above, with
O_NOFOLLOW: a symbolic link anywhere below the starting directory (a committed
`agents -> ../outside`, an agent directory linked to another project) is refused with
its path named, never followed, so no command reads or writes outside the repository
through the checkout. The starting directory itself is trusted: the repository's root,
or a path the user typed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pygit2

from agentstage.errors import InvalidConfig, Problem, warn
from agentstage.faults import crash_point
from agentstage.yamlload import MAX_FILE_BYTES

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def link_refused(where: str, message: str | None = None) -> InvalidConfig:
    return InvalidConfig(
        [Problem(where, None, "", message or "is a symbolic link in the work tree: "
                 "agentstage never follows one (it can lead outside the repository)")],
        hint=f"replace it with a real directory of files: git rm {where} (or rm {where}), "
             "then add the files; nothing was read or written through it")


def _not_a_directory(where: str) -> InvalidConfig:
    return InvalidConfig([Problem(where, None, "", "is not a directory in the work tree")],
                         hint=f"move {where} aside and check it out again (git checkout -- "
                              f"{where})")


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidConfig([Problem(rel, None, "", "a path in the work tree may not name "
                                     "'.' or '..'")])
    return parts


def open_dir(base: str | os.PathLike[str], rel: str, create: bool = False,
             shown: str | None = None, last_link: str | None = None) -> int | None:
    """A file descriptor of the directory *rel* under *base*, every component of *rel*
    opened without following a link; None when a component does not exist (unless
    *create*). A link or a non-directory on the way is an InvalidConfig naming it
    (*shown* is how *rel* is named in messages, default *rel*; *last_link* the message
    when *rel* itself is a link). The caller closes it."""
    fd = os.open(os.fspath(base), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked: list[str] = []
    parts = _parts(rel)
    try:
        for part in parts:
            walked.append(part)
            where = "/".join(walked) if shown is None else _shown(shown, rel, walked)
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                os.mkdir(part, 0o777, dir_fd=fd)
                child = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    info = os.lstat(part, dir_fd=fd)
                    if stat.S_ISLNK(info.st_mode):
                        last = last_link if len(walked) == len(parts) else None
                        raise link_refused(where, last) from None
                    raise _not_a_directory(where) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _shown(shown: str, rel: str, walked: list[str]) -> str:
    """The name of the walked part of *rel* in messages, when *rel* is shown as *shown*."""
    parts = _parts(rel)
    rest = len(parts) - len(walked)
    names = shown.split("/")
    return "/".join(names[:len(names) - rest]) if rest else shown


AGENT_LINK = "an agent directory must not be a symbolic link"


@contextlib.contextmanager
def opened_dir(base: str | os.PathLike[str], rel: str, create: bool = False,
               shown: str | None = None, last_link: str | None = None
               ) -> Iterator[int | None]:
    fd = open_dir(base, rel, create, shown, last_link)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def entries(fd: int) -> list[tuple[str, str]]:
    """(name, kind) of a directory's entries, sorted; kind is "file", "directory",
    "symbolic link" or "other" (a fifo, a device, a socket), never through a link."""
    out = []
    with os.scandir(fd) as found:
        for entry in found:
            info = entry.stat(follow_symlinks=False)
            kind = ("symbolic link" if stat.S_ISLNK(info.st_mode) else
                    "directory" if stat.S_ISDIR(info.st_mode) else
                    "file" if stat.S_ISREG(info.st_mode) else "other")
            out.append((entry.name, kind))
    return sorted(out)


def read_at(fd: int, name: str, limit: int | None = None) -> bytes | None:
    """The bytes of the regular file *name* in the directory *fd*, None when there is none
    (a link, a fifo or a directory is not one). More than *limit* bytes are not read."""
    try:
        file = os.open(name, _FILE, dir_fd=fd)
    except OSError:
        return None
    with os.fdopen(file, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read() if limit is None else handle.read(limit + 1)


def read_agent_files(base: str | os.PathLike[str], rel: str, where: str) -> dict[str, bytes]:
    """The files of the agent directory *rel* under *base* (named *where* in messages).
    Links (the directory, a component above it, or a file in it), subdirectories, odd
    files and files over the cap are problems."""
    fd = open_dir(base, rel, shown=where,
                  last_link=AGENT_LINK)
    if fd is None:
        raise InvalidConfig([Problem(where, None, "", "no such directory")])
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    try:
        for name, kind in entries(fd):
            shown = f"{where}/{name}"
            if kind == "symbolic link":
                problems.append(Problem(shown, None, "", "symbolic links are not allowed in "
                                        "an agent"))
            elif kind == "directory":
                problems.append(Problem(shown, None, "", "subdirectories are not allowed in "
                                        "an agent"))
            elif kind != "file":  # a fifo or device would block or never end
                problems.append(Problem(shown, None, "", "not a regular file"))
            else:
                data = read_at(fd, name, MAX_FILE_BYTES)
                if data is None:
                    problems.append(Problem(shown, None, "", "not a regular file"))
                elif len(data) > MAX_FILE_BYTES:
                    size = os.stat(name, dir_fd=fd, follow_symlinks=False).st_size
                    problems.append(Problem(shown, None, "", f"file is {size} bytes, over "
                                            f"the cap of {MAX_FILE_BYTES}"))
                else:
                    files[name] = data
    finally:
        os.close(fd)
    if problems:
        raise InvalidConfig(problems)
    return files


def subdirectories(base: str | os.PathLike[str], rel: str) -> list[tuple[str, str]] | None:
    """(name, kind) of the directories and links directly in *rel* under *base* (links are
    listed so that reading them refuses them by name); None when *rel* does not exist."""
    with opened_dir(base, rel) as fd:
        if fd is None:
            return None
        return [(n, k) for n, k in entries(fd) if k in ("directory", "symbolic link")]


def read_index(git_dir: str | os.PathLike[str], index_file: str | os.PathLike[str] | None
               ) -> pygit2.Index:
    """The index of a checkout (default .git/index; the pre-commit hook passes git's
    GIT_INDEX_FILE), empty when there is none."""
    path = os.fspath(index_file) if index_file else os.path.join(os.fspath(git_dir), "index")
    return pygit2.Index(path) if os.path.exists(path) else pygit2.Index()


def index_entries(index: pygit2.Index, prefix: str) -> Iterator[tuple[str, str, int]]:
    """(path, id, mode) of the index entries under *prefix*."""
    for entry in index:
        if entry.path.startswith(prefix):
            yield entry.path, str(entry.id), entry.mode


class WorkTree:
    """The checkout of a non-bare repository: its files and its index."""

    def __init__(self, repo: pygit2.Repository) -> None:
        assert repo.workdir, "a bare repository has no work tree"
        self._repo = repo
        self.root = Path(repo.workdir)

    def _split(self, path: str) -> tuple[str, str]:
        directory, _, name = path.rpartition("/")
        return directory, name

    def check_dir(self, directory: str) -> None:
        """Refuse *directory* (e.g. `agents/<id>`) when any component of it is a link."""
        with opened_dir(self.root, directory):
            pass

    def files(self, directory: str) -> list[str]:
        """Paths of what is in *directory* and is not a directory (links included, as the
        names they are); empty when there is no such directory."""
        with opened_dir(self.root, directory) as fd:
            if fd is None:
                return []
            return [f"{directory}/{n}" for n, kind in entries(fd) if kind != "directory"]

    def read(self, path: str) -> bytes | None:
        directory, name = self._split(path)
        with opened_dir(self.root, directory) as fd:
            return None if fd is None else read_at(fd, name)

    def write(self, path: str, data: bytes) -> None:
        """Write *path* whole: a temporary file renamed over it, so a link there is
        replaced (never written through) and a reader sees the old or the new bytes."""
        directory, name = self._split(path)
        with opened_dir(self.root, directory, create=True) as fd:
            assert fd is not None
            tmp = f".{name}.agentstage-tmp-{os.getpid()}"  # one a process: no two collide
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=fd)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o666, dir_fd=fd)
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)

    def remove(self, path: str) -> None:
        directory, name = self._split(path)
        with opened_dir(self.root, directory) as fd:
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)

    def remove_empty_dir(self, directory: str) -> None:
        parent, name = self._split(directory)
        with opened_dir(self.root, parent) as fd:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=fd)

    def dirty_paths(self, directory: str, committed: Iterable[str]) -> list[str]:
        """Files of *directory* whose work tree or index differs from *committed* (the
        paths of staging's files there). A link on the way is refused, not followed."""
        paths = set(committed) | set(self.files(directory))
        with opened_dir(self.root, directory) as fd:
            directories = {f"{directory}/{n}" for n, kind in (entries(fd) if fd is not None
                                                               else []) if kind == "directory"}
        dirty = []
        for path in sorted(paths):
            try:
                flags = self._repo.status_file(path)
            except (KeyError, pygit2.GitError):
                continue
            if flags not in (pygit2.GIT_STATUS_CURRENT, pygit2.GIT_STATUS_IGNORED) \
                    and path not in directories:
                dirty.append(path)
        return dirty

    def staged(self, directory: str) -> dict[str, str]:
        """path -> id of the index's files directly in *directory*."""
        index = self._repo.index
        index.read()
        prefix = directory + "/"
        return {p: oid for p, oid, _mode in index_entries(index, prefix)
                if "/" not in p[len(prefix):]}

    def between(self, before: Mapping[str, str], after: Mapping[str, str]) -> bool:
        """Whether every file of the work tree is as in *before* or as in *after* (path ->
        blob id; absent counts when a side lacks it): a checkout update cut short."""
        for path in before.keys() | after.keys():
            data = self.read(path)
            found = None if data is None else str(pygit2.hash(data))
            if found not in (before.get(path), after.get(path)):
                return False
        return True

    def holds(self, files: Mapping[str, str]) -> bool:
        """Whether the work tree holds exactly these files' contents (path -> blob id)."""
        for path, oid in files.items():
            data = self.read(path)
            if data is None or str(pygit2.hash(data)) != oid:
                return False
        return True

    def sync(self, directory: str, before: Mapping[str, str], after: Mapping[str, str],
             blob: Callable[[str], bytes]) -> None:
        """Make *directory* in the work tree and the index go from the files *before* to
        the files *after* (path -> blob id)."""
        self.check_dir(directory)
        index = self._repo.index
        index.read()
        for path in before.keys() - after.keys():
            self.remove(path)
            if path in index:
                index.remove(path)
        for path, oid in after.items():
            if before.get(path) == oid and self.read(path) is not None:
                continue
            self.write(path, blob(oid))
            crash_point("checkout:after-file")
            index.add(path)
        if not after:
            self.remove_empty_dir(directory)
        index.write()


def finish_interrupted(worktree: WorkTree, directory: str, parent: Mapping[str, str],
                       staging: Mapping[str, str], blob: Callable[[str], bytes],
                       label: str) -> bool:
    """A command that moved staging and died before the checkout followed leaves the
    index and work tree at staging's parent (*parent*, path -> id) for *directory*:
    finish the job (*staging* is what it must become), and say so."""
    if worktree.staged(directory) != dict(parent) or not worktree.between(parent, staging):
        return False
    worktree.sync(directory, parent, staging, blob)
    warn(f"completed an interrupted update of the checkout: {directory} now matches "
         f"staging ({label})")
    return True


__all__ = ["AGENT_LINK", "WorkTree", "entries", "finish_interrupted", "index_entries",
           "link_refused", "open_dir", "opened_dir", "read_agent_files", "read_at",
           "read_index", "subdirectories"]
