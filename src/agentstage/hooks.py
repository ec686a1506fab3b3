"""Git hooks: the checkout's pre-commit check, the server's pre-receive rules, and
installing both without clobbering hooks already there.

The installed hook files only exec `agentstage hook NAME "$@"` (or say how to install
agentstage when it is not on PATH); a hook that was there before is kept as NAME.local
and run first by `agentstage hook NAME`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from agentstage.errors import Conflict, InvalidConfig, Problem, UsageError
from agentstage.ids import is_agent_id
from agentstage.policy import (
    META_REF,
    POLICY_FILE,
    Policy,
    identity_variable,
    load_policy,
    parse_policy,
    pusher,
)
from agentstage.store import PRODUCTION_PREFIX, STAGING, Store, tag_ref

CLIENT_HOOKS = ("pre-commit",)
SERVER_HOOKS = ("pre-receive",)
KEPT_SUFFIX = ".local"
PUBLISH_TAG_RE = re.compile(r"refs/tags/([^/]+)/v([0-9]+)")


def load_agent(agent: str, files: Mapping[str, bytes]) -> None:
    """Raise InvalidConfig when the agent's files are invalid. The agent model is imported
    only when an agent is checked: a push that touches none starts fast."""
    from agentstage.config import load_agent as load

    load(agent, files)


def hook_script(name: str) -> str:
    # Without the check, a checkout whose venv is not active fails every commit with the
    # shell's "exec: agentstage: not found", which names neither the tool nor the fix.
    return (
        "#!/bin/sh\n"
        "command -v agentstage >/dev/null 2>&1 || {\n"
        f'  echo "error: the git hook {name} needs agentstage, which is not on PATH" >&2\n'
        '  echo "hint: pip install agentstage, or activate the environment that has it'
        ' (source .venv/bin/activate)" >&2\n'
        "  exit 1\n"
        "}\n"
        f'exec agentstage hook {name} "$@"\n'
    )


def _is_ours(path: Path, name: str) -> bool:
    try:
        return f"exec agentstage hook {name} " in path.read_text(errors="replace")
    except OSError:
        return False


def hooks_dir(store: Store) -> Path:
    """Where git looks for hooks: `git rev-parse --git-path hooks` (core.hooksPath aware)."""
    where = store.workdir or store.git_dir
    try:
        done = subprocess.run(["git", "-C", str(where), "rev-parse", "--git-path", "hooks"],
                              capture_output=True, text=True, check=True)
        found = Path(done.stdout.strip())
        return found if found.is_absolute() else where / found
    except (OSError, subprocess.CalledProcessError):
        return store.git_dir / "hooks"


def install(store: Store, server: bool = False) -> dict[str, Any]:
    """Install the client hooks (or with *server* the server hooks). A hook already there
    that is not ours is kept as NAME.local and still runs first; installing twice changes
    nothing."""
    if store.is_bare and not server:
        raise UsageError("a bare repository takes the server hooks",
                         hint="run 'agentstage hooks install --server'")
    directory = hooks_dir(store)
    directory.mkdir(parents=True, exist_ok=True)
    done = []
    for name in SERVER_HOOKS if server else CLIENT_HOOKS:
        target, kept = directory / name, directory / (name + KEPT_SUFFIX)
        action = "installed"
        if target.exists() or target.is_symlink():
            if _is_ours(target, name):
                if target.read_text() == hook_script(name):
                    done.append({"hook": name, "action": "already installed"})
                    continue
                action = "updated"
            elif kept.exists() or kept.is_symlink():
                raise Conflict(
                    f"{target} is not agentstage's hook, and {kept.name} is taken too",
                    hint=f"merge them into one {kept.name} by hand, then run the install again",
                )
            else:
                target.rename(kept)
                action = f"installed (the existing hook is kept as {kept.name} and runs first)"
        tmp = directory / f".{name}.agentstage.tmp"
        tmp.write_text(hook_script(name))
        tmp.chmod(0o755)
        os.replace(tmp, target)
        done.append({"hook": name, "action": action})
    return {"hooks_dir": str(directory), "hooks": done}


def uninstall(store: Store) -> dict[str, Any]:
    """Remove only agentstage's hooks, putting back any hook that install kept."""
    directory = hooks_dir(store)
    done = []
    for name in CLIENT_HOOKS + SERVER_HOOKS:
        target, kept = directory / name, directory / (name + KEPT_SUFFIX)
        if not _is_ours(target, name):
            if target.exists():
                done.append({"hook": name, "action": "left alone (not agentstage's)"})
            continue
        target.unlink()
        if kept.exists() or kept.is_symlink():
            kept.rename(target)
            done.append({"hook": name, "action": f"removed; {kept.name} put back as {name}"})
        else:
            done.append({"hook": name, "action": "removed"})
    return {"hooks_dir": str(directory), "hooks": done}


def run_kept(store: Store, name: str, args: Iterable[str], stdin: bytes | None) -> int:
    """Run the hook that install kept (NAME.local), if any; its exit code, 0 if none."""
    kept = hooks_dir(store) / (name + KEPT_SUFFIX)
    if not (kept.is_file() and os.access(kept, os.X_OK)):
        return 0
    return subprocess.run([str(kept), *args], input=stdin, check=False).returncode


# -- pre-commit: the agents the commit touches, as staged ---------------------------------


def check_staged(store: Store, index_file: str | None = None) -> list[dict[str, Any]]:
    """Validation results (as `validate`) for every agent the staged changes touch, read
    from the index git is committing (GIT_INDEX_FILE while a hook runs)."""
    if index_file is None:
        index_file = os.environ.get("GIT_INDEX_FILE") or None
    results = []
    try:
        staged = store.staged_agents(index_file)
    except InvalidConfig as exc:
        agents = sorted({p.file.split("/")[1] for p in exc.problems})
        return [_result(a, [p for p in exc.problems if p.file.split("/")[1] == a])
                for a in agents]
    for agent, files in staged.items():
        if files is None:  # removed: nothing to check
            continue
        try:
            load_agent(agent, files)
        except InvalidConfig as exc:
            results.append(_result(agent, exc.problems))
            continue
        results.append(_result(agent, []))
    return results


def _result(agent: str, problems: list[Problem]) -> dict[str, Any]:
    return {"agent": agent, "path": f"agents/{agent}", "valid": not problems,
            "problems": [p.as_json() for p in problems]}


# -- pre-receive: the server's rules ------------------------------------------------------


class RefUpdate(NamedTuple):
    old: str | None
    new: str | None
    ref: str


class Refusal(NamedTuple):
    ref: str
    reason: str
    details: list[str]

    def lines(self) -> list[str]:
        return [f"{self.ref}: {self.reason}", *(f"  {d}" for d in self.details)]


def parse_updates(text: str) -> list[RefUpdate]:
    """`<old> <new> <ref>` lines as git feeds pre-receive; all-zero ids mean "none"."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise UsageError(f"bad pre-receive line {line!r}: expected '<old> <new> <ref>'")
        old, new, ref = parts
        out.append(RefUpdate(None if set(old) == {"0"} else old,
                             None if set(new) == {"0"} else new, ref))
    return out


def quarantine_dirs(env: Mapping[str, str]) -> list[str]:
    """The object directories git set for this hook: the quarantine holding the pushed
    objects, and its alternates."""
    dirs = [env.get("GIT_OBJECT_DIRECTORY", "")]
    dirs += env.get("GIT_ALTERNATE_OBJECT_DIRECTORIES", "").split(os.pathsep)
    return [os.path.abspath(d) for d in dirs if d]


def check_push(store: Store, updates: list[RefUpdate], who: str | None) -> list[Refusal]:
    """Every ref of the push against DESIGN.md section 7; the refusals (empty: accept)."""
    try:
        policy = load_policy(store, store.ref(META_REF))
    except InvalidConfig as exc:
        return [Refusal(u.ref, "the server's policy is invalid, so nothing is accepted",
                        [str(p) for p in exc.problems]) for u in updates]
    if policy is not None and who is None:
        var = identity_variable(store)
        return [Refusal(u.ref, f"no pusher identity: the server has a policy but ${var} is "
                        "unset; push through the git host so it authenticates you (or set "
                        "git config agentstage.identity on the server)", []) for u in updates]
    rules = _Rules(store, updates, policy, who)
    return [r for u in updates if (r := rules.check(u)) is not None]


class _Rules:
    def __init__(self, store: Store, updates: list[RefUpdate], policy: Policy | None,
                 who: str | None) -> None:
        self.store, self.policy, self.who = store, policy, who
        self.by_ref = {u.ref: u for u in updates}
        self.new_tags: dict[str, list[int]] = {}
        for u in updates:
            match = PUBLISH_TAG_RE.fullmatch(u.ref)
            if match and is_agent_id(match[1]) and u.old is None and u.new is not None:
                self.new_tags.setdefault(match[1], []).append(int(match[2]))
        self.latest: dict[str, int] = {}

    def latest_version(self, agent: str) -> int:
        if agent not in self.latest:
            from agentstage.agents import latest_version

            self.latest[agent] = latest_version(self.store, agent)
        return self.latest[agent]

    def check(self, u: RefUpdate) -> Refusal | None:
        try:
            return self._check(u)
        except InvalidConfig as exc:  # a tree or tag that cannot be read strictly
            return Refusal(u.ref, "refused: what it points at cannot be read as agentstage "
                           "reads it", [str(p) for p in exc.problems])

    def _check(self, u: RefUpdate) -> Refusal | None:
        if u.ref == STAGING:
            reason, details = self.staging(u)
        elif u.ref.startswith(PRODUCTION_PREFIX):
            reason, details = self.production(u, u.ref[len(PRODUCTION_PREFIX):])
        elif u.ref == META_REF:
            reason, details = self.meta(u)
        elif (match := PUBLISH_TAG_RE.fullmatch(u.ref)) and is_agent_id(match[1]):
            reason, details = self.tag(u, match[1], match[2])
        else:
            return None
        return Refusal(u.ref, reason, details) if reason else None

    def _forward(self, u: RefUpdate, what: str, hint: str) -> str | None:
        if u.new is None:
            return f"{what} is never deleted"
        if self.store.object_kind(u.new) != "commit":
            return f"{what} must point at a commit"
        if u.old is not None and not self.store.is_ancestor(u.old, u.new):
            return f"not a fast-forward: {what} only moves forward; {hint}"
        return None

    def staging(self, u: RefUpdate) -> tuple[str | None, list[str]]:
        refused = self._forward(u, "staging", "fetch, merge or rebase onto it, and push again")
        if refused:
            return refused, []
        if self.policy is not None and not self.policy.is_editor(self.who):
            return f"{self.who} is not an editor in the server's policy; ask an admin to " \
                   "add you to editors", []
        problems = []
        for agent in self.store.changed_agents(u.old, u.new):
            try:
                files = self.store.agent_files(u.new, agent)
                if files is not None:
                    load_agent(agent, files)
            except InvalidConfig as exc:
                problems += exc.problems
        if problems:
            return "invalid agent configuration; fix it (agentstage validate) and push " \
                   "again", [str(p) for p in problems]
        return None, []

    def production(self, u: RefUpdate, agent: str) -> tuple[str | None, list[str]]:
        if not is_agent_id(agent):
            return f"{agent!r} is not a valid agent id, so it has no production ref", []
        refused = self._forward(u, f"production/{agent}",
                                f"publish from staging with 'agentstage publish {agent}'")
        if refused:
            return refused, []
        assert u.new is not None
        expected = self.latest_version(agent) + 1
        tags = sorted(self.new_tags.get(agent, []))
        tag = self.by_ref.get(tag_ref(agent, tags[-1])) if tags else None
        info = self.store.tag_object(tag.new) if tag and tag.new else None
        if info is None or info.target != u.new:
            return (f"production moves only with its publish record: push the annotated tag "
                    f"refs/tags/{agent}/v{expected} pointing at {u.new[:12]} in the same push "
                    f"(agentstage publish {agent} --push REMOTE does both)"), []
        if self.policy is not None and not self.policy.is_publisher(self.who, agent):
            return f"{self.who} may not publish {agent}; ask an admin to add you to " \
                   f"publishers in the server's policy", []
        try:
            files = self.store.agent_files(u.new, agent)
            if files is None:
                if _retires(info.message):
                    return None, []
                return f"the new commit has no agents/{agent}: nothing to publish (to take " \
                       f"it out of production: agentstage retire {agent})", []
            load_agent(agent, files)
        except InvalidConfig as exc:
            return "invalid agent configuration cannot go live", [str(p) for p in exc.problems]
        return None, []

    def tag(self, u: RefUpdate, agent: str, digits: str) -> tuple[str | None, list[str]]:
        name = f"{agent}/v{digits}"
        if u.new is None:
            return "publish tags are never deleted: they are the audit trail", []
        if u.old is not None:
            return "publish tags are never moved: they are the audit trail", []
        info = self.store.tag_object(u.new)
        if info is None:
            return "a publish tag must be an annotated tag (agentstage publish writes one)", []
        if info.name != name:
            return f"the tag object is named {info.name!r}, not {name!r}", []
        version = int(digits)
        expected = self.latest_version(agent) + 1
        tags = sorted(self.new_tags.get(agent, []))
        if digits != str(version) or tags != list(range(expected, expected + len(tags))):
            return f"not the next version: the next publish of {agent} is v{expected}; " \
                   "versions have no gaps", []
        production = self.by_ref.get(PRODUCTION_PREFIX + agent)
        if production is None or production.new is None:
            return (f"a publish tag goes with its production ref: push "
                    f"refs/heads/production/{agent} in the same push "
                    f"(agentstage publish {agent} --push REMOTE does both)"), []
        if version == tags[-1] and info.target != production.new:
            return f"points at {info.target[:12]}, but production/{agent} moves to " \
                   f"{production.new[:12]}", []
        return None, []

    def meta(self, u: RefUpdate) -> tuple[str | None, list[str]]:
        refused = self._forward(u, "the policy ref", "fetch it, change it on top, push again")
        if refused:
            return refused, []
        if self.policy is not None and not self.policy.is_admin(self.who):
            return f"only admins may change the policy, and {self.who} is not one", []
        assert u.new is not None
        data = self.store.file_at(u.new, POLICY_FILE)
        if data is None:
            return f"the policy commit has no {POLICY_FILE}", []
        try:
            parse_policy(data)
        except InvalidConfig as exc:
            return "invalid policy; fix it (agentstage policy set FILE checks it)", \
                [str(p) for p in exc.problems]
        return None, []


def _retires(message: str) -> bool:
    """Whether a publish tag's record says it retires the agent."""
    import json

    from agentstage.publishing import RECORD_MARKER

    _reason, marker, block = message.rpartition(f"\n\n{RECORD_MARKER}\n")
    try:
        return bool(marker) and json.loads(block).get("retired") is True
    except (ValueError, AttributeError):
        return False


def pre_receive(store: Store, text: str, env: Mapping[str, str]) -> list[Refusal]:
    """The pre-receive hook: read the pushed objects through git's quarantine and check
    every ref; the refusals (any refusal refuses the whole push)."""
    store.add_object_dirs(quarantine_dirs(env))
    return check_push(store, parse_updates(text), pusher(store))
