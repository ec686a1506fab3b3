"""Publishing to a remote: production and its tag pushed together, through git itself so
the server's hooks run; a refusal puts the local refs back as they were."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from agentstage.errors import Conflict, NotFound, PolicyDenied
from agentstage.store import Store, production_ref

_UNSET: Any = object()


def push_publish(store: Store, remote: str, agent: str, tag: str,
                 previous_production: str | None = _UNSET) -> None:
    """`git push --atomic` of production/<agent> and the tag <agent>/vN to *remote*.

    When the push fails, the tag ref is deleted and production goes back to
    *previous_production* (default: what the tag's publish record says it was), each a
    compare-and-swap, and the server's reason is raised: PolicyDenied (exit 7) when the
    server refused, Conflict (5) when the remote moved on, NotFound (6) when it is not
    there."""
    prod, tag_name = production_ref(agent), f"refs/tags/{tag}"
    new_prod, tag_oid = store.ref(prod), store.ref(tag_name)
    if new_prod is None or tag_oid is None:
        raise NotFound(f"no local publish {tag} to push", hint="run agentstage publish first")
    if previous_production is _UNSET:
        previous_production = _production_before(store, tag)
    where = store.workdir or store.git_dir
    done = subprocess.run(
        ["git", "-C", str(where), "push", "--atomic", "--porcelain", remote,
         f"{prod}:{prod}", f"{tag_name}:{tag_name}"],
        capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return
    store.update_refs({tag_name: (tag_oid, None), prod: (new_prod, previous_production)},
                      f"agentstage publish --push {remote}: refused, {tag} taken back")
    reasons = [line.removeprefix("remote: ").removeprefix("error: ").strip()
               for line in done.stderr.splitlines()
               if line.startswith("remote: error: ") or line.startswith("remote:   ")]
    rejected = [line.split("\t")[-1] for line in done.stdout.splitlines()
                if line.startswith("!\t")]
    undone = f"the local {tag} was taken back and production/{agent} is as before"
    if any("remote rejected" in r for r in rejected):
        raise PolicyDenied(
            f"{remote} refused the publish of {tag}" +
            "".join(f"\n  {r}" for r in reasons or rejected),
            hint=f"{undone}; fix what the server says, then publish again")
    if rejected:
        raise Conflict(f"{remote} did not take the publish of {tag}: {'; '.join(rejected)}",
                       hint=f"{undone}; fetch {remote} (git fetch {remote} "
                            f"'refs/tags/*:refs/tags/*' '+refs/heads/production/*:"
                            f"refs/heads/production/*'), then publish again")
    message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "push failed"
    raise NotFound(f"could not push to {remote}: {message}",
                   hint=f"{undone}; check the remote with git remote -v")


def push_published(store: Store, remote: str, result: dict[str, Any]) -> None:
    """Push what `publishing.publish` returned (nothing for a dry run)."""
    if result.get("published"):
        push_publish(store, remote, result["agent"], result["tag"])


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
