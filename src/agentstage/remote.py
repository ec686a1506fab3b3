"""The network: fetching the team's refs before a publish, pushing a publish (production,
its tag, and staging when it is ahead) atomically through git itself so the server's
hooks run, and asking a remote what it holds. A refused push puts the local refs back."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from typing import Any, NamedTuple

from agentstage.errors import Conflict, NotFound, PolicyDenied
from agentstage.store import STAGING, TAG_PREFIX, Store, production_ref

_UNSET: Any = object()
TIMEOUT = 120  # seconds for one fetch or push: a hung server must not hang the command


class Upstream(NamedTuple):
    """The remote staging tracks, and the remote-tracking ref of its staging."""

    remote: str
    tracking: str

    @property
    def branch(self) -> str:
        return self.tracking.rpartition("/")[2]


def upstream(store: Store) -> Upstream | None:
    found = store.upstream(STAGING)
    return Upstream(*found) if found else None


def _git(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    where = store.workdir or store.git_dir
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                              check=False, env=env, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"timed out after {TIMEOUT} s")


def _last_line(text: str, default: str) -> str:
    """git's reason: its first `fatal:` line (the lines after it are advice), else the last."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("fatal: ")]
    return (fatal or lines or [default])[0 if fatal else -1].removeprefix("fatal: ")


def fetch(store: Store, remote: str) -> None:
    """`git fetch REMOTE --tags`: the remote's branches into remote-tracking refs, and every
    tag, and the server's record of who pushed each publish (the notes ref, when the remote
    has it: a pattern, so its absence is no error). A local tag that differs from the
    remote's tag of the same name is a Conflict: two publishes took one version number."""
    from agentstage.approvals import PREFIX as APPROVALS
    from agentstage.pushlog import NOTES_REF

    # -c adds to the remote's configured refspecs; only the server writes this ref, so the
    # remote's copy wins; approvals are created once and never moved (the server's hook)
    done = _git(store, "-c", f"remote.{remote}.fetch=+{NOTES_REF}*:{NOTES_REF}*",
                "-c", f"remote.{remote}.fetch=+{APPROVALS}*:{APPROVALS}*", "fetch",
                "--tags", remote)
    if done.returncode == 0:
        return
    clobbered = [line.split("->")[-1].split("(")[0].strip() for line in done.stderr.splitlines()
                 if "would clobber existing tag" in line]
    if clobbered:
        names = ", ".join(clobbered)
        raise Conflict(
            f"the local tag{'s' if len(clobbered) > 1 else ''} {names} differ"
            f"{'' if len(clobbered) > 1 else 's'} from {remote}'s: this clone published a "
            f"version number that the team had already used (or never pushed it)",
            hint="see 'agentstage doctor' for each tag and the command that fixes it")
    raise NotFound(f"could not fetch from {remote}: {_last_line(done.stderr, 'fetch failed')}",
                   hint=f"check the remote with 'git remote -v' and 'git fetch {remote}'; "
                        "--no-push publishes locally without it")


def check_staging_current(store: Store, up: Upstream) -> bool:
    """Local staging against its upstream after a fetch: a Conflict when it is behind or
    has diverged; True when it is ahead (it must be pushed with the publish)."""
    local, remote = store.ref(STAGING), store.ref(up.tracking)
    if remote is None or local == remote:
        return remote is None and local is not None
    assert local is not None
    short = up.tracking.removeprefix("refs/remotes/")
    if store.is_ancestor(local, remote):
        raise Conflict(
            f"staging is behind {short}: the team has edits this clone has not pulled, "
            "and a publish from here would not include them",
            hint=f"run 'git pull --ff-only {up.remote} {up.branch}' on staging "
                 f"(in a bare repository: git fetch {up.remote} {up.branch}:staging), "
                 "review with 'agentstage diff', then publish again")
    if not store.is_ancestor(remote, local):
        raise Conflict(
            f"staging has diverged from {short}: each has commits the other lacks",
            hint=f"run 'git pull --rebase {up.remote} {up.branch}' (or merge) and "
                 f"'git push {up.remote} staging', then publish again")
    return True


def push_publish(store: Store, remote: str, agent: str, tags: str | Sequence[str],
                 previous_production: str | None = _UNSET, staging: bool = False,
                 also: Sequence[str] = ()) -> None:
    """`git push --atomic` of production/<agent> and its new tags (and staging with
    *staging*) to *remote*.

    When the push fails, the tags are deleted and production goes back to
    *previous_production* (default: what the first tag's publish record says it was), each
    a compare-and-swap, and the server's reason is raised: PolicyDenied (exit 7) when the
    server refused, Conflict (5) when the remote moved on, NotFound (6) when it is not
    there. *also* names more refs the push carries (the approvals a publish lists), left
    as they are when it fails."""
    tags = [tags] if isinstance(tags, str) else list(tags)
    if previous_production is _UNSET:
        if not tags or store.ref(production_ref(agent)) is None or any(
                store.ref(TAG_PREFIX + t) is None for t in tags):
            raise NotFound(f"no local publish {', '.join(tags)} to push",
                           hint="run agentstage publish first")
        previous_production = _production_before(store, tags[0])
    _push(store, remote, {agent: previous_production}, tags, staging, also)


def push_release(store: Store, remote: str, publishes: Sequence[tuple[str, str, str | None]],
                 staging: bool = False, also: Sequence[str] = ()) -> None:
    """One `git push --atomic` of a release: each (agent, tag, production before) pushes
    production/<agent> and its tag, all or none; a refusal takes every one back here, as
    push_publish does for one."""
    _push(store, remote, {agent: before for agent, _tag, before in publishes},
          [tag for _agent, tag, _before in publishes], staging, also)


def _push(store: Store, remote: str, before: dict[str, str | None], tags: list[str],
          staging: bool, also: Sequence[str]) -> None:
    prods = {production_ref(agent): old for agent, old in before.items()}
    tag_refs = [TAG_PREFIX + t for t in tags]
    new_prods = {prod: store.ref(prod) for prod in prods}
    tag_oids = {name: store.ref(name) for name in tag_refs}
    if not tags or None in new_prods.values() or None in tag_oids.values():
        raise NotFound(f"no local publish {', '.join(tags)} to push",
                       hint="run agentstage publish first")
    specs = [f"{r}:{r}" for r in ([STAGING] if staging else []) + [*prods, *tag_refs, *also]]
    done = _git(store, "push", "--atomic", "--porcelain", remote, *specs)
    if done.returncode == 0:
        return
    shown = ", ".join(tags)
    store.update_refs({**{name: (oid, None) for name, oid in tag_oids.items()},
                       **{prod: (new_prods[prod], old) for prod, old in prods.items()}},
                      f"agentstage publish: {remote} refused, {shown} taken back")
    moved = [f"production/{agent} {'removed' if old is None else 'put back as before'}"
             for agent, old in before.items()]
    undone = f"the local {shown} {'was' if len(tags) == 1 else 'were'} taken back and " \
             f"{', '.join(moved)}"
    reasons, rejected = refusal(done)
    taken = remote_refs(store, remote, tag_refs) if rejected else None
    if taken:  # whatever the server said: someone published this version first
        raise Conflict(f"{remote} already has {', '.join(sorted(taken))}: someone published "
                       "first (a publish raced and lost)",
                       hint=f"{undone}; run the publish again: it fetches {remote} first")
    if any("hook declined" in r for r in rejected):
        raise PolicyDenied(
            f"{remote} refused the publish of {shown}" +
            "".join(f"\n  {r}" for r in reasons or rejected),
            hint=f"{undone}; fix what the server says, then publish again")
    if rejected:
        raise Conflict(f"{remote} did not take the publish of {shown}: {'; '.join(rejected)} "
                       "(someone published or pushed first)",
                       hint=f"{undone}; run the publish again: it fetches {remote} first")
    raise NotFound(f"could not push to {remote}: {_last_line(done.stderr, 'push failed')}",
                   hint=f"{undone}; check the remote with 'git remote -v'")


def refusal(done: subprocess.CompletedProcess[str]) -> tuple[list[str], list[str]]:
    """What a refused `git push --porcelain` says: the server's reasons (its hook's
    `remote: error:` lines and their continuations) and the rejection of each ref."""
    reasons = [line.removeprefix("remote: ").removeprefix("error: ").strip()
               for line in done.stderr.splitlines()
               if line.startswith("remote: error: ") or line.startswith("remote:   ")]
    rejected = [line.split("\t")[-1] for line in done.stdout.splitlines()
                if line.startswith("!\t")]
    return reasons, rejected


def push_refs(store: Store, remote: str, refs: Sequence[str], what: str) -> None:
    """`git push --atomic REMOTE REF:REF...` of refs that are only ever created (approvals);
    the server's refusal is raised: PolicyDenied (exit 7) when its hook said no, NotFound
    (6) when the remote is not there, Conflict (5) otherwise."""
    done = _git(store, "push", "--atomic", "--porcelain", remote, *(f"{r}:{r}" for r in refs))
    if done.returncode == 0:
        return
    reasons, rejected = refusal(done)
    if any("hook declined" in r for r in rejected):
        raise PolicyDenied(f"{remote} refused {what}" + "".join(f"\n  {r}" for r in reasons),
                           hint="it was taken back here; fix what the server says, then "
                                "run the command again")
    if rejected:
        raise Conflict(f"{remote} did not take {what}: {'; '.join(rejected)}",
                       hint="it was taken back here; run the command again")
    raise NotFound(f"could not push to {remote}: {_last_line(done.stderr, 'push failed')}",
                   hint="check the remote with 'git remote -v'; --no-push keeps it here")


def push_published(store: Store, remote: str, result: dict[str, Any]) -> None:
    """Push what `publishing.publish` returned (nothing for a dry run)."""
    if result.get("published"):
        push_publish(store, remote, result["agent"], [result["tag"]])


def remote_refs(store: Store, remote: str, patterns: Sequence[str]) -> dict[str, str] | None:
    """`git ls-remote REMOTE PATTERNS`: ref -> object id on the remote (annotated tags by
    the tag object, as the ref holds it); None when the remote cannot be reached."""
    done = _git(store, "ls-remote", remote, *patterns)
    if done.returncode != 0:
        return None
    found = {}
    for line in done.stdout.splitlines():
        oid, _, ref = line.partition("\t")
        if ref and not ref.endswith("^{}"):
            found[ref] = oid
    return found


def _production_before(store: Store, tag: str) -> str | None:
    from agentstage.publishing import RECORD_MARKER

    info = store.tag(tag)
    if info is None:
        raise NotFound(f"no tag {tag}")
    _reason, marker, block = info.message.rpartition(f"\n\n{RECORD_MARKER}\n")
    if not marker:
        raise NotFound(f"{tag} has no publish record")
    before = json.loads(block).get("production_before")
    return str(before) if before else None
