"""validate: agent directories on disk or at a git ref, every problem reported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentstage.config import AGENTS_DIR, agent_dir, find_agent_dirs, load_agent, read_agent_dir
from agentstage.errors import InvalidConfig, NotFound, Problem, UsageError
from agentstage.ids import AGENT_ID_RULE, is_agent_id
from agentstage.store import Store


def _result(agent: str, path: str, problems: list[Problem]) -> dict[str, Any]:
    return {"agent": agent, "path": path, "valid": not problems,
            "problems": [p.as_json() for p in problems]}


def _check(agent: str, path: str, read: Any) -> dict[str, Any]:
    try:
        load_agent(agent, read(), path)
    except InvalidConfig as exc:
        return _result(agent, path, exc.problems)
    return _result(agent, path, [])


def _agent_dirs(path: Path) -> list[Path]:
    if not path.exists():
        raise NotFound(f"no such file or directory: {path}", hint="check the path")
    if (path / AGENTS_DIR).is_dir():
        return find_agent_dirs(path)
    if path.name == AGENTS_DIR and path.is_dir():
        return find_agent_dirs(path.parent)
    if path.is_dir():
        return [path]
    if path.is_file() and path.parent.is_dir():
        return [path.parent]
    raise NotFound(f"not an agent directory: {path}")


def validate_disk(paths: list[Path], repo: str | None) -> list[dict[str, Any]]:
    """Check agent directories on disk. Relative *paths* are taken in *repo* when given, as
    `git -C` does; with no paths, every agent of the repository. Directories inside the
    repository are shown relative to it: agents/<id>. Inside the repository no symbolic
    link is followed (worktree.py): a linked `agents` or agent directory is refused."""
    base: Path | None = None
    if not paths:
        root = Path(repo) if repo else None
        if root is None or not (root / AGENTS_DIR).is_dir():
            store = Store.open(repo)
            root = store.workdir
            if root is None:
                raise UsageError("a bare repository has no files on disk",
                                 hint="use --ref staging")
        base = root
        dirs = find_agent_dirs(root)
    else:
        if repo:
            base = Path(repo)
            paths = [p if p.is_absolute() else base / p for p in paths]
        dirs = []
        for path in paths:
            for found in _agent_dirs(path):
                if found not in dirs:
                    dirs.append(found)
    inside = base if base is not None else _repository_around(dirs)
    # a directory whose name is not an agent id is one more problem (load_agent reports
    # it), not a reason to stop: every agent is still checked
    results = []
    for d in dirs:
        where = str(d)
        if base is not None and d.is_relative_to(base):
            where = d.relative_to(base).as_posix()
        results.append(_check(d.name, where,
                              lambda d=d, w=where: read_agent_dir(d, w, inside)))
    return results


def _repository_around(dirs: list[Path]) -> Path | None:
    """The work tree of the repository around the current directory, when there is one:
    below it no link is followed, whatever path the user typed."""
    if not dirs:
        return None
    try:
        workdir = Store.open(None).workdir
    except NotFound:
        return None
    return Path(os.path.abspath(workdir)) if workdir is not None else None


def validate_ref(store: Store, ref: str, names: list[str]) -> list[dict[str, Any]]:
    commit = store.resolve_commit(ref)
    agents = [Path(n).name for n in names]
    for agent in agents:  # a name the user typed: a usage error; one in the tree: a problem
        if not is_agent_id(agent):
            raise UsageError(f"invalid agent id {agent!r}: an agent id is {AGENT_ID_RULE}")
    results = []
    for agent in agents or store.list_agents(commit):
        where = f"{ref}:{agent_dir(agent)}"
        try:
            files = store.agent_files(commit, agent)
        except InvalidConfig as exc:  # links or subdirectories in the agent's tree
            results.append(_result(agent, where, [p._replace(file=f"{ref}:{p.file}")
                                                  for p in exc.problems]))
            continue
        if files is None:
            raise NotFound(f"no agent {agent!r} at {ref}")
        results.append(_check(agent, where, lambda files=files: files))
    return results


def render_results(results: list[dict[str, Any]]) -> str:
    from agentstage.escape import terminal  # paths, keys and file names from the repository

    lines = []
    for r in results:
        if r["valid"]:
            lines.append(f"ok       {terminal(r['path'])}")
        else:
            lines.append(f"invalid  {terminal(r['path'])}")
            lines.extend(f"  {terminal(str(Problem(**p)))}" for p in r["problems"])
    bad = sum(not r["valid"] for r in results)
    lines.append(f"{len(results)} agent{'s' if len(results) != 1 else ''} checked, "
                 f"{bad} invalid" if bad else f"{len(results)} agent"
                 f"{'s' if len(results) != 1 else ''} valid")
    return "\n".join(lines)


def raise_if_invalid(results: list[dict[str, Any]]) -> None:
    bad = [r for r in results if not r["valid"]]
    if bad:
        raise InvalidConfig(
            [Problem(**p) for r in bad for p in r["problems"]],
            message=f"{len(bad)} invalid agent{'s' if len(bad) != 1 else ''}: "
                    + ", ".join(r["agent"] for r in bad),
            hint="fix the problems listed above",
        )

