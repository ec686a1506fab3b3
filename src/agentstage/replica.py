"""A served clone that follows a central git server (`agentstage serve --remote NAME`).

The central repository is the one store; the clone is a copy of it that the server reads
from and writes through:

- `follow` makes the clone's refs the remote's again: a fetch of its branches, every tag
  (forced and pruned: a tag only here was never pushed, so never acknowledged), the notes
  of who pushed, the approvals and the policy; then staging and every production ref set to the
  remote's, each a compare-and-swap. Run before each write and at least every second.
- `share` pushes a staging write to the remote before it is acknowledged: `git push
  --atomic` through git itself, so the central hooks, the host's rules and git's own
  credential settings apply. A push that lost a race (the remote's staging moved) follows
  the remote and raises `Moved`, a Conflict whose staging differs from the one the write
  started from, so the caller plans the same edit again on the new staging (fields that
  truly collide: 409). A refusal puts the clone's staging back exactly and raises the
  server's reason: PolicyDenied (403), InvalidConfig (422) when the hook found the
  configuration invalid, Unreachable (503) when the remote could not be asked.

A publish needs nothing more: `publishing.publish` fetches first and pushes production and
its tag atomically when staging tracks a remote, and puts the clone back when refused.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from agentstage.errors import (
    AgentstageError,
    Conflict,
    InvalidConfig,
    PolicyDenied,
    Problem,
    UsageError,
)
from agentstage.remote import _git, _last_line, refusal
from agentstage.store import PRODUCTION_PREFIX, STAGING, TAG_PREFIX, Store

T = TypeVar("T")
FOLLOW_SECONDS = 1.0  # reads are at most about this much older than the remote
BRANCH = "refs/heads/staging"
POLICY_REF = "refs/meta/agentstage"  # the server's policy: the replica answers by it too


class Unreachable(AgentstageError):
    """The central repository could not be fetched from or pushed to (HTTP 503)."""

    exit_code = 6


class Moved(Conflict):
    """The remote's staging moved under a write: the clone now follows it; plan again."""


def check(store: Store, remote: str) -> list[str]:
    """Make the clone ready to follow *remote*, or a UsageError saying why it cannot;
    returns what was configured (for the server to say). Staging must not be checked out:
    its files would lag behind the remote's."""
    if not store.config(f"remote.{remote}.url"):
        raise UsageError(f"--remote {remote}: no such remote in {store.workdir or store.git_dir}",
                         hint="list them with 'git remote -v'; add one with 'git remote add "
                              f"{remote} URL'")
    if store.head_branch() == STAGING:
        raise UsageError(
            "staging is checked out here: a server that follows a remote moves staging to "
            "the remote's, and the files of a checkout would lag behind",
            hint="serve a bare clone (git clone --bare URL) or check out another branch "
                 "(git switch --detach)")
    done = []
    if store.remote_tracking(remote, BRANCH) is None:  # a bare clone maps no branches
        _config(store, "--add", f"remote.{remote}.fetch", f"+refs/heads/*:refs/remotes/{remote}/*")
        done.append(f"remote.{remote}.fetch += +refs/heads/*:refs/remotes/{remote}/*")
    if store.upstream(STAGING) != (remote, store.remote_tracking(remote, BRANCH)):
        _config(store, "branch.staging.remote", remote)
        _config(store, "branch.staging.merge", BRANCH)
        done.append(f"staging tracks {remote}/staging")
    return done


def _config(store: Store, *args: str) -> None:
    done = _git(store, "config", *args)
    if done.returncode != 0:
        raise UsageError(f"could not set git config {args[-2]}: "
                         f"{_last_line(done.stderr, 'git config failed')}")


def follow(store: Store, remote: str) -> bool:
    """Fetch *remote* and make the clone's staging, production refs and tags its own;
    True when a ref of the clone moved. Unreachable when the fetch fails."""
    from agentstage.approvals import PREFIX as APPROVALS

    assert APPROVALS.startswith(POLICY_REF)  # the pattern below fetches both
    from agentstage.pushlog import NOTES_REF

    done = _git(store, "-c", f"remote.{remote}.fetch=+{TAG_PREFIX}*:{TAG_PREFIX}*",
                "-c", f"remote.{remote}.fetch=+{NOTES_REF}*:{NOTES_REF}*",
                # the policy and the approvals (refs/meta/agentstage-approvals/...): a
                # pattern, so a central repository without a policy is fetched all the same
                "-c", f"remote.{remote}.fetch=+{POLICY_REF}*:{POLICY_REF}*",
                "fetch", "--prune", "--quiet", remote)
    if done.returncode != 0:
        raise Unreachable(f"could not fetch from {remote}: "
                          f"{_last_line(done.stderr, 'fetch failed')}",
                          hint="the server keeps serving what it fetched last; check the "
                               f"remote with 'git fetch {remote}'")
    staging = store.remote_tracking(remote, BRANCH)
    wanted: dict[str, str | None] = {STAGING: store.ref(staging) if staging else None}
    if wanted[STAGING] is None:
        return False  # the remote has no staging yet: nothing to follow
    tracking = store.remote_tracking(remote, PRODUCTION_PREFIX + "x")
    prefix = tracking[:-1] if tracking else None
    if prefix is not None:
        for name in store.ref_names(prefix):
            wanted[PRODUCTION_PREFIX + name.removeprefix(prefix)] = store.ref(name)
    for name in store.ref_names(PRODUCTION_PREFIX):
        wanted.setdefault(name, None)  # only here: a publish that never reached the remote
    updates = {name: (store.ref(name), oid) for name, oid in wanted.items()
               if store.ref(name) != oid}
    if updates:
        store.update_refs(updates, f"agentstage serve: follow {remote}")
    return bool(updates)


def share(store: Store, remote: str, before: str | None) -> None:
    """Push staging, moved by a write from *before*, to *remote*; see the module's doc."""
    after = store.ref(STAGING)
    if after is None or after == before:
        return
    done = _git(store, "push", "--atomic", "--porcelain", remote, f"{STAGING}:{BRANCH}")
    if done.returncode == 0:
        return
    reasons, rejected = refusal(done)
    try:
        store.update_refs({STAGING: (after, before)},
                          f"agentstage serve: {remote} did not take {after[:12]}")
        moved = follow(store, remote) and store.ref(STAGING) != before
    except AgentstageError:
        moved = False
    if moved:
        raise Moved(f"{remote}'s staging moved while this write was pushed",
                    hint="send the request again")
    if any("hook declined" in r for r in rejected):
        text = "\n".join(reasons) or "; ".join(rejected)
        if any("invalid agent configuration" in r for r in reasons):
            problems = [Problem(f"{remote}'s pre-receive hook", None, "", r) for r in reasons]
            raise InvalidConfig(problems, message=f"{remote} refused the write: {text}",
                                hint="nothing was written; fix what the server says")
        raise PolicyDenied(f"{remote} refused the write: {text}",
                           hint="nothing was written; ask an admin of the git server")
    if rejected:
        raise PolicyDenied(f"{remote} did not take the write: {'; '.join(rejected)}",
                           hint="nothing was written; the git server's own rules refused it")
    raise Unreachable(f"could not push to {remote}: {_last_line(done.stderr, 'push failed')}",
                      hint="nothing was written; check the remote with 'git remote -v'")


class Replica:
    """One served clone following *remote*: writes go through `write` (under the server's
    write lock), and a thread follows the remote every FOLLOW_SECONDS."""

    def __init__(self, repo: str, remote: str, lock: threading.Lock) -> None:
        self.repo = repo
        self.remote = remote
        self.lock = lock
        self._local = threading.local()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing: str | None = None  # the last fetch's problem, while it lasts

    def store(self) -> Store:
        found: Store | None = getattr(self._local, "store", None)
        if found is None:
            found = self._local.store = Store.open(self.repo)
        return found

    def write(self, run: Callable[[], T]) -> T:
        """Run a write (the caller holds the write lock): follow the remote first, and push
        every staging commit the write makes before it returns."""
        from agentstage import api_ops

        follow(self.store(), self.remote)
        token = api_ops.SHARE.set(lambda store, before: share(store, self.remote, before))
        try:
            return run()
        finally:
            api_ops.SHARE.reset(token)

    def start(self) -> None:
        with self.lock:
            follow(self.store(), self.remote)  # a restarted replica catches up at once
        self._thread = threading.Thread(target=self._loop, name="agentstage-follow",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(FOLLOW_SECONDS):
            try:
                with self.lock:
                    follow(self.store(), self.remote)
                if self.failing is not None:
                    print(f"agentstage: following {self.remote} again", file=sys.stderr,
                          flush=True)
                self.failing = None
            except AgentstageError as exc:
                if exc.message != self.failing:
                    print(f"agentstage: {exc.message}", file=sys.stderr, flush=True)
                self.failing = exc.message
            except Exception as exc:  # the loop must outlive one bad fetch
                print(f"agentstage: following {self.remote} failed: {exc}", file=sys.stderr,
                      flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
