"""doctor: check a repository's agentstage state, and repair what can be repaired safely.

It reads every agent's refs and tags (unlike the other commands, which read one
agent's), so its cost grows with the repository: run it when something looks wrong,
or from a nightly job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agentstage.agents import VERSION_RE, load_at, resolve_identity
from agentstage.errors import AgentstageError
from agentstage.ids import is_agent_id
from agentstage.publishing import parse_record
from agentstage.store import PRODUCTION_PREFIX, STAGING, TAG_PREFIX, Store, production_ref


def _finding(kind: str, where: str, message: str, repair: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "where": where, "message": message, "repairable": repair is not None,
            "repair": repair, "repaired": False}


def _agents_with_refs(store: Store) -> dict[str, list[int]]:
    """agent -> sorted versions of its publish tags (and agents with a production ref)."""
    found: dict[str, list[int]] = {}
    for ref in store.refs(TAG_PREFIX):
        owner, _, version = ref[len(TAG_PREFIX):].partition("/")
        if is_agent_id(owner) and VERSION_RE.fullmatch(version):
            found.setdefault(owner, []).append(int(version[1:]))
    for ref in store.refs(PRODUCTION_PREFIX):
        found.setdefault(ref[len(PRODUCTION_PREFIX):], [])
    return {agent: sorted(v) for agent, v in found.items()}


def _stale_locks(git_dir: Path, older_than: float) -> list[Path]:
    now = time.time()
    candidates = [git_dir / name for name in ("HEAD.lock", "packed-refs.lock", "index.lock")]
    refs = git_dir / "refs"
    if refs.is_dir():
        candidates += refs.rglob("*.lock")
    return sorted(p for p in candidates
                  if p.is_file() and now - p.stat().st_mtime >= older_than)


def check(store: Store, lock_age: float = 600.0) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = []
    for lock in _stale_locks(store.git_dir, lock_age):
        findings.append(_finding(
            "stale-lock", str(lock),
            f"lock file left behind (older than {lock_age:g} s): git and agentstage refuse to "
            "write the ref it guards", repair="remove the lock file"))
    staging = store.ref(STAGING)
    if staging is None:
        findings.append(_finding("no-staging", STAGING, "the staging branch is missing"))
    for agent, versions in sorted(_agents_with_refs(store).items()):
        findings += _check_agent(store, agent, versions, staging)
    if staging is not None:
        for agent in store.list_agents(staging):
            findings += _check_config(store, staging, agent, "staging")
    return findings


def _check_config(store: Store, commit: str, agent: str, where: str) -> list[dict[str, Any]]:
    try:
        load_at(store, commit, agent, where)
    except AgentstageError as exc:
        return [_finding("invalid-config", f"{where}:agents/{agent}", exc.message)]
    return []


def _check_agent(store: Store, agent: str, versions: list[int], staging: str | None
                 ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    prod_ref = production_ref(agent)
    production = store.ref(prod_ref)
    expected = list(range(1, len(versions) + 1))
    if versions != expected:
        missing = sorted(set(range(1, max(versions, default=0) + 1)) - set(versions))
        gaps = ", ".join(f"v{n}" for n in missing)
        out.append(_finding("version-gap", f"{TAG_PREFIX}{agent}/",
                            f"publish versions have gaps: missing {gaps}"))
    previous: str | None = None
    latest = None
    for version in versions:
        name = f"{agent}/v{version}"
        try:
            info = store.tag(name)
            assert info is not None
            parse_record(info)
        except AgentstageError as exc:
            out.append(_finding("bad-tag", TAG_PREFIX + name, exc.message))
            continue
        if previous is not None and not store.is_ancestor(previous, info.target):
            out.append(_finding("not-fast-forward", TAG_PREFIX + name,
                                f"{name} does not descend from the publish before it"))
        previous = latest = info.target
    if latest is not None and production != latest:
        if production is None or store.is_ancestor(production, latest):
            out.append(_finding(
                "tag-without-production", prod_ref,
                f"the newest publish {agent}/v{versions[-1]} did not move {prod_ref} "
                "(an interrupted publish)", repair=f"move {prod_ref} to {agent}/v{versions[-1]}"))
        else:
            out.append(_finding(
                "production-without-tag", prod_ref,
                f"{prod_ref} moved past its newest publish {agent}/v{versions[-1]} without a "
                "publish: end users get a configuration nobody published",
                ))
    elif latest is None and production is not None:
        out.append(_finding("production-without-tag", prod_ref,
                            f"{prod_ref} exists but {agent} has no publish tag"))
    if production is not None:
        if staging is not None and not store.is_ancestor(production, staging):
            out.append(_finding("not-fast-forward", prod_ref,
                                f"{prod_ref} is not an ancestor of staging: the next publish "
                                "will be refused until production is merged into staging"))
        out += _check_config(store, production, agent, prod_ref.removeprefix("refs/heads/"))
    return out


def doctor(store: Store, repair: bool = False, lock_age: float = 600.0,
           author: str | None = None) -> dict[str, Any]:
    findings = check(store, lock_age)
    if repair and any(f["repairable"] for f in findings):
        who = resolve_identity(store, author)
        for finding in findings:
            if not finding["repairable"]:
                continue
            if finding["kind"] == "stale-lock":
                Path(finding["where"]).unlink(missing_ok=True)
            elif finding["kind"] == "tag-without-production":
                from agentstage.publishing import reconcile

                agent = finding["where"].removeprefix(PRODUCTION_PREFIX)
                if not reconcile(store, agent, who):
                    continue
            finding["repaired"] = True
    left = [f for f in findings if not f["repaired"]]
    return {"healthy": not left, "findings": findings}
