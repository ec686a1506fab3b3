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

from agentstage.agents import load_at
from agentstage.errors import Conflict, InvalidConfig, Problem, UsageError
from agentstage.ids import is_agent_id
from agentstage.meta import (
    META_REF,
    POLICY_FILE,
    PolicyRules,
    identity_variable,
    pusher,
    read_policy,
)
from agentstage.store import PRODUCTION_PREFIX, STAGING, Store, TagInfo

CLIENT_HOOKS = ("pre-commit",)
SERVER_HOOKS = ("pre-receive", "post-receive")
# What `hooks install --server` sets in the server repository's git config, and why.
SERVER_SETTINGS = (
    ("receive.fsckObjects", "true",
     "git checks every pushed object and refuses a malformed one (duplicate or unsorted tree "
     "entries, a broken tag or commit) before any hook runs"),
)
KEPT_SUFFIX = ".local"
APPROVALS_REF = "refs/meta/agentstage-approvals"  # and under it (approvals.py)
PUBLISH_TAG_RE = re.compile(r"refs/tags/([^/]+)/v([1-9][0-9]*)")


def load_agent(agent: str, files: Mapping[str, bytes]) -> None:
    """Raise InvalidConfig when the agent's files are invalid. The agent model is imported
    only when the files are not plainly valid (fastload.py), to word the problems."""
    from agentstage.fastload import load_dict

    load_dict(agent, files)


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
    if not server:
        return {"hooks_dir": str(directory), "hooks": done}
    return {"hooks_dir": str(directory), "hooks": done, "settings": configure_server(store),
            "symrefs": protected_symrefs(store)}


def installed(store: Store, name: str) -> bool:
    """Whether agentstage's hook *name* is installed where git looks for hooks."""
    return _is_ours(hooks_dir(store) / name, name)


def _git(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "--git-dir", str(store.git_dir), *args], capture_output=True,
                          text=True, check=False)


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "yes", "on", "1")


def server_settings(store: Store) -> list[dict[str, Any]]:
    """Each git setting the server should have: key, wanted value, what is in force, why."""
    out = []
    for key, value, why in SERVER_SETTINGS:
        found = _git(store, "config", "--get", key).stdout.strip() or None
        if found is None and key == "receive.fsckObjects":  # git's fallback for it
            found = _git(store, "config", "--get", "transfer.fsckObjects").stdout.strip() or None
        out.append({"key": key, "value": value, "found": found, "why": why,
                    "ok": _is_true(found) == _is_true(value)})
    return out


def configure_server(store: Store) -> list[dict[str, Any]]:
    """Set SERVER_SETTINGS in the repository's own config; what was done with each."""
    done = []
    for setting in server_settings(store):
        key, value = setting["key"], setting["value"]
        if setting["ok"]:
            action = "already set"
        else:
            written = _git(store, "config", key, value)
            if written.returncode != 0:
                raise Conflict(f"could not set {key}: {written.stderr.strip()}",
                               hint=f"run: git -C {store.git_dir} config {key} {value}")
            action = "set" if setting["found"] is None else f"set (was {setting['found']})"
        done.append({"key": key, "value": value, "action": action, "why": setting["why"]})
    return done


def _protected_ref(ref: str) -> bool:
    """Whether *ref* is a name the server's rules guard (or one that would block one)."""
    from agentstage.pushlog import NOTES_REF

    parts = ref.split("/")
    return (ref in (STAGING, META_REF, PRODUCTION_PREFIX.rstrip("/"), "refs/notes")
            or ref.startswith((PRODUCTION_PREFIX, META_REF + "/", NOTES_REF, APPROVALS_REF))
            or (parts[:2] == ["refs", "tags"] and len(parts) > 3 and is_agent_id(parts[2])))


def protected_symrefs(store: Store) -> list[dict[str, str]]:
    """Symbolic refs (HEAD aside) named like a protected ref or pointing at one: a push
    through them reaches the protected ref under another name. Each with the command
    that removes it."""
    out = []
    for name in store.refs("refs/"):
        target = store.symbolic_target(name)  # followed to the end, existing or not
        if target and (_protected_ref(name) or _protected_ref(target)):
            out.append({"ref": name, "target": target,
                        "fix": f"git -C {store.git_dir} symbolic-ref --delete {name}"})
    return out


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


def protected_blocker(ref: str) -> str | None:
    """Why *ref* may not be created or moved by anyone: it would block a protected ref in
    git's ref storage (a name cannot be both a ref and a directory of refs, so
    refs/tags/bot/v2/x makes refs/tags/bot/v2 impossible forever), or it takes a name the
    protected namespaces reserve. None when the name blocks nothing."""
    parts = ref.split("/")
    if ref in ("refs", "refs/heads", "refs/tags", "refs/meta"):
        return f"{ref} would block every ref under it, the protected ones too"
    if ref.startswith(STAGING + "/"):
        return "a ref under refs/heads/staging/ would block staging itself"
    if ref == PRODUCTION_PREFIX.rstrip("/"):
        return "refs/heads/production would block every agent's production ref"
    if ref.startswith(PRODUCTION_PREFIX):
        rest = ref[len(PRODUCTION_PREFIX):]
        if is_agent_id(rest):
            return None
        owner = rest.split("/")[0]
        if "/" in rest and is_agent_id(owner):
            return f"would block {PRODUCTION_PREFIX}{owner}, the production of {owner}"
        return ("refs/heads/production/ holds only production/<agent-id> refs, and "
                f"{rest!r} is not an agent id")
    if ref.startswith(META_REF + "/"):
        return f"a ref under {META_REF}/ would block the policy ref {META_REF}"
    if parts[:2] == ["refs", "tags"] and len(parts) >= 3 and is_agent_id(parts[2]):
        agent = parts[2]
        if len(parts) == 3:
            return (f"a tag named like an agent id would block {agent}'s publish tags "
                    f"(refs/tags/{agent}/vN); tags named like an agent id are reserved")
        if len(parts) == 4 and PUBLISH_TAG_RE.fullmatch(ref):
            return None
        if len(parts) > 4 and PUBLISH_TAG_RE.fullmatch("/".join(parts[:4])):
            return f"would block {agent}'s publish tag refs/tags/{'/'.join(parts[2:4])}"
        return (f"refs/tags/{agent}/ is reserved for {agent}'s publish tags "
                f"({agent}/v1, {agent}/v2, ...: v and a number without leading zeros)")
    return None


def _blocker_hint(ref: str) -> str:
    if ref.startswith("refs/tags/"):
        return "hint: name the tag otherwise: with a dot or a capital letter, e.g. release-1.0"
    return "hint: name it otherwise, outside staging/, production/ and refs/meta/agentstage/"


def check_push(store: Store, updates: list[RefUpdate], who: str | None) -> list[Refusal]:
    """Every ref of the push against DESIGN.md section 7; the refusals (empty: accept).
    A push to a symbolic ref on the server is checked as the ref it resolves to."""
    try:
        policy = read_policy(store)  # validated once per policy commit (meta.py)
    except InvalidConfig as exc:
        return [Refusal(u.ref, "the server's policy is invalid, so nothing is accepted",
                        [str(p) for p in exc.problems]) for u in updates]
    if policy is not None and who is None:
        var = identity_variable(store)
        return [Refusal(u.ref, f"no pusher identity: the server has a policy but ${var} is "
                        "unset; push through the git host so it authenticates you (or set "
                        "git config agentstage.identity on the server)", []) for u in updates]
    shown: dict[str, str] = {}
    resolved = []
    for u in updates:
        target = store.symbolic_target(u.ref)
        if target is not None and target != u.ref:
            shown[target] = f"{u.ref} (a symbolic ref to {target})"
            u = u._replace(ref=target)
        resolved.append(u)
    rules = _Rules(store, resolved, policy, who)
    return [r._replace(ref=shown.get(r.ref, r.ref)) for u in resolved
            if (r := server_written(u.ref) or rules.check(u)) is not None]


class _Tag(NamedTuple):
    """A publish tag the push creates: its number's digits and its update."""

    digits: str
    update: RefUpdate


class _Rules:
    def __init__(self, store: Store, updates: list[RefUpdate], policy: PolicyRules | None,
                 who: str | None) -> None:
        self.store, self.policy, self.who = store, policy, who
        self.by_ref = {u.ref: u for u in updates}
        self.new_tags: dict[str, list[_Tag]] = {}
        for u in updates:
            match = PUBLISH_TAG_RE.fullmatch(u.ref)
            if match and is_agent_id(match[1]) and u.old is None and u.new is not None:
                self.new_tags.setdefault(match[1], []).append(_Tag(match[2], u))
        for tags in self.new_tags.values():
            tags.sort(key=lambda t: (len(t.digits), t.digits))  # no int(): 5000 digits
        self.latest: dict[str, int] = {}
        self._existing: set[str] | None = None

    def latest_version(self, agent: str) -> int:
        if agent not in self.latest:
            from agentstage.agents import latest_version

            self.latest[agent] = latest_version(self.store, agent)
        return self.latest[agent]

    def check(self, u: RefUpdate) -> Refusal | None:
        try:
            if u.new is not None:
                blocker = protected_blocker(u.ref)
                if blocker:
                    return Refusal(u.ref, f"refused: {blocker}", [_blocker_hint(u.ref)])
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
        elif u.ref.startswith(APPROVALS_REF):
            reason, details = self.approval(u), []
        else:
            return None
        if not reason and u.old is None:
            reason = self.blocked_by_existing(u.ref)
        return Refusal(u.ref, reason, details) if reason else None

    def blocked_by_existing(self, ref: str) -> str | None:
        """A ref already on the server that git's ref storage cannot hold beside *ref*
        (left there before this rule), which would make git fail to create *ref* after
        this hook said yes: in a push without --atomic, the rest would go through."""
        if self._existing is None:
            self._existing = set(self.store.refs("refs/"))
        parts = ref.split("/")
        found = [p for p in ("/".join(parts[:n]) for n in range(2, len(parts)))
                 if p in self._existing]
        found += sorted(r for r in self._existing if r.startswith(ref + "/"))[:3]
        if not found:
            return None
        return (f"cannot be created: the server has {found[0]}, and git cannot hold both "
                f"names; an admin must delete it first (git push REMOTE :{found[0]})")

    def _ancestor(self, old: str, new: str) -> bool:
        """Whether commit *old* is *new* or an ancestor of it; False when either is not a
        commit (another ref of the push may point anywhere: its own rule names that)."""
        return self.store.object_kind(old) == "commit" and \
            self.store.object_kind(new) == "commit" and self.store.is_ancestor(old, new)

    def _forward(self, u: RefUpdate, what: str, hint: str) -> str | None:
        if u.new is None:
            return f"{what} is never deleted"
        if self.store.object_kind(u.new) != "commit":
            return f"{what} must point at a commit"
        if u.old is not None and not self._ancestor(u.old, u.new):
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
                load_at(self.store, u.new, agent)
            except InvalidConfig as exc:
                problems += exc.problems
        if problems:
            return "invalid agent configuration; fix it (agentstage validate) and push " \
                   "again", [str(p) for p in problems]
        return None, []

    def staging_after(self) -> str | None:
        """Staging as it is once this push is done."""
        pushed = self.by_ref.get(STAGING)
        return pushed.new if pushed is not None else self.store.ref(STAGING)

    def production(self, u: RefUpdate, agent: str) -> tuple[str | None, list[str]]:
        if not is_agent_id(agent):
            return f"{agent!r} is not a valid agent id, so it has no production ref", []
        refused = self._forward(u, f"production/{agent}",
                                f"publish from staging with 'agentstage publish {agent}'")
        if refused:
            return refused, []
        assert u.new is not None
        tags = self.new_tags.get(agent, [])
        if not tags:
            expected = self.latest_version(agent) + 1
            return (f"production moves only with its publish record: push the annotated tag "
                    f"refs/tags/{agent}/v{expected} pointing at {u.new[:12]} in the same push "
                    f"(agentstage publish {agent} --push REMOTE does both)"), []
        last = tags[-1]
        for tag in tags:
            refused = self._tag_refusal(tag.update, agent, tag.digits)
            if refused:
                return f"its publish tag refs/tags/{agent}/v{tag.digits} is refused: " \
                       f"{refused}", []
        info = self.store.tag_object(last.update.new or "")
        if info is None or info.target != u.new:
            return (f"production moves to {u.new[:12]}, but its publish tag "
                    f"refs/tags/{agent}/v{last.digits} points elsewhere"), []
        if self.policy is not None and not self.policy.is_publisher(self.who, agent):
            return f"{self.who} may not publish {agent}; ask an admin to add you to " \
                   f"publishers in the server's policy", []
        refused = self.approvals_short(agent, info)
        if refused:
            return refused, []
        staging = self.staging_after()
        if staging is None or not self._ancestor(u.new, staging):
            return (f"production moves only to a commit staging has, and {u.new[:12]} is not "
                    "on the server's staging: push staging in the same push (agentstage "
                    f"publish {agent} --push REMOTE does), or publish from the server's "
                    "staging"), []
        try:
            if load_at(self.store, u.new, agent) is None:
                if _record(info).get("retired") is True:
                    return None, []
                return f"the new commit has no agents/{agent}: nothing to publish (to take " \
                       f"it out of production: agentstage retire {agent})", []
        except InvalidConfig as exc:
            return "invalid agent configuration cannot go live", [str(p) for p in exc.problems]
        return None, []

    def approvals_short(self, agent: str, info: TagInfo) -> str | None:
        """Why this publish lacks the approvals the policy requires (four eyes)."""
        if self.policy is None:
            return None
        from agentstage.approvals import PREFIX, publish_refusal

        pushed = {r: u.new for r, u in self.by_ref.items() if r.startswith(PREFIX)}
        return publish_refusal(self.store, self.policy, agent, info.target,
                               info.tagger.email, _record(info), self.who, pushed)

    def approval(self, u: RefUpdate) -> str | None:
        from agentstage.approvals import ref_refusal

        return ref_refusal(self.store, u.ref, u.old, u.new, self.policy, self.who)

    def tag(self, u: RefUpdate, agent: str, digits: str) -> tuple[str | None, list[str]]:
        refused = self._tag_refusal(u, agent, digits)
        if refused:
            return refused, []
        production = self.by_ref.get(PRODUCTION_PREFIX + agent)
        if production is None or production.new is None:
            return (f"a publish tag goes with its production ref: push "
                    f"refs/heads/production/{agent} in the same push "
                    f"(agentstage publish {agent} --push REMOTE does both)"), []
        tags = self.new_tags[agent]
        info = self.store.tag_object(u.new or "")
        assert info is not None
        if digits == tags[-1].digits and info.target != production.new:
            return f"points at {info.target[:12]}, but production/{agent} moves to " \
                   f"{production.new[:12]}", []
        later = next((t for t in tags if (len(t.digits), t.digits) > (len(digits), digits)),
                     None)
        if later is not None:
            after = self.store.tag_object(later.update.new or "")
            if after is not None and not self._ancestor(info.target, after.target):
                return (f"points at {info.target[:12]}, which is not an ancestor of "
                        f"{agent}/v{later.digits}'s {after.target[:12]}: publishes only move "
                        "forward"), []
        return None, []

    def _tag_refusal(self, u: RefUpdate, agent: str, digits: str) -> str | None:
        """What is wrong with this publish tag on its own and as the next number; None when
        it is a valid publish of *agent*."""
        name = f"{agent}/v{digits}"
        if u.new is None:
            return "publish tags are never deleted: they are the audit trail"
        if u.old is not None:
            return "publish tags are never moved: they are the audit trail"
        expected = self.latest_version(agent) + 1
        numbers = [t.digits for t in self.new_tags.get(agent, [])]
        if numbers != [str(n) for n in range(expected, expected + len(numbers))]:
            return f"not the next version: the next publish of {agent} is v{expected}; " \
                   "versions have no gaps"
        info = self.store.tag_object(u.new)
        if info is None:
            return "a publish tag must be an annotated tag (agentstage publish writes one)"
        if info.name != name:
            return f"the tag object is named {info.name!r}, not {name!r}"
        kind = self.store.object_kind(info.target)
        if kind != "commit":
            return f"a publish tag points at a commit, and this one points at a " \
                   f"{kind or 'missing object'}"
        from agentstage.publishing import parse_record

        try:
            record = parse_record(info)
        except InvalidConfig as exc:
            return f"{exc.problems[0].message} (publish tags are written by agentstage " \
                   "publish)"
        version = int(digits)
        previous = f"{agent}/v{version - 1}" if version > 1 else None
        wrong = [key for key, value in (("agent", agent), ("version", version),
                                        ("previous", previous),
                                        ("staging_commit", info.target))
                 if record[key] != value or isinstance(record[key], bool)]
        if not isinstance(record["changes"], list):
            wrong.append("changes")
        if wrong:
            return (f"its publish record does not verify: {', '.join(wrong)} "
                    f"{'does' if len(wrong) == 1 else 'do'} not match {name} (agent {agent},"
                    f" version {version}, previous {previous or 'none'}, staging_commit "
                    f"{info.target[:12]})")
        claims = self._claimed_changes(agent, previous, info.target, record["changes"])
        if claims:
            return f"its publish record does not verify: {claims}"
        mismatch = self.policy.tagger_refusal(self.who, info.tagger.email) if self.policy \
            else None  # the policy's users: the record must name the pusher
        if mismatch:
            return mismatch
        signing = self.policy.signing if self.policy else None
        if signing is not None:  # signed publishes: unsigned, bad or unknown signatures
            from agentstage.signing import push_refusal

            unsigned = push_refusal(self.store, signing.required, signing.allowed_signers,
                                    u.new)
            if unsigned:
                return unsigned
        return self.blocked_by_existing(u.ref)

    def _claimed_changes(self, agent: str, previous: str | None, target: str,
                         changes: list[Any]) -> str | None:
        """A record's changes against the two trees: a change claimed in a file the
        publish did not change is a forgery (checked when the publish before it is on the
        server already; a later tag of the same push is checked by its own fields)."""
        from agentstage.verify import changes_problems

        before = None
        if previous is not None:
            found = self.store.tag(previous)
            if found is None:
                return None
            before = found.target
        problems = changes_problems(self.store, agent, before, target, changes)
        return "; ".join(problems) or None

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
        from agentstage.policy import parse_policy

        try:
            policy = parse_policy(data)
        except InvalidConfig as exc:
            return "invalid policy; fix it (agentstage policy set FILE checks it)", \
                [str(p) for p in exc.problems]
        if not policy.admins:
            return "a policy without admins could never be changed again; name at least " \
                   "one admin: admins: [alice]", []
        return None, []


def _record(info: TagInfo) -> dict[str, Any]:
    """A publish tag's record, {} when it has none that parses."""
    from agentstage.publishing import parse_record

    try:
        return parse_record(info)
    except InvalidConfig:
        return {}


def pre_receive(store: Store, text: str, env: Mapping[str, str]) -> list[Refusal]:
    """The pre-receive hook: read the pushed objects through git's quarantine and check
    every ref; the refusals (any refusal refuses the whole push)."""
    store.add_object_dirs(quarantine_dirs(env))
    return check_push(store, parse_updates(text), pusher(store))


# -- post-receive: who pushed each publish ------------------------------------------------


def server_written(ref: str) -> Refusal | None:
    """Pushes to the pushers' notes ref (or a name that would block it) are refused: only
    the server's post-receive hook writes it."""
    from agentstage.pushlog import NOTES_REF

    if ref == "refs/notes" or ref.startswith(NOTES_REF):
        return Refusal(ref, f"{NOTES_REF} is written by the server only: its post-receive hook "
                       "records who pushed each publish; push the publish itself", [])
    return None


class PostReceive(NamedTuple):
    noted: list[str]  # publish tags noted with their pusher
    delivering: list[str]  # publish tags handed to the webhooks' background delivery
    problem: str | None  # why the webhooks were not started (None: they were, or none)


def post_receive(store: Store, text: str) -> PostReceive:
    """The post-receive hook (the push has landed): note the authenticated pusher beside
    every publish tag the push created (none when the host gave no identity), then hand
    those publishes to a detached process that delivers them to the policy's webhooks
    (webhooks.py): the push does not wait for it, and nothing of it can fail the push."""
    from agentstage.pushlog import record

    who = pusher(store)
    created = {u.ref.removeprefix("refs/tags/"): u.new for u in parse_updates(text)
               if u.old is None and u.new is not None and PUBLISH_TAG_RE.fullmatch(u.ref)}
    noted: list[str] = []
    try:
        if who is not None and created:
            record(store, [oid for oid in created.values() if oid is not None], who)
            noted = sorted(created)
    finally:  # the webhooks go even when the note could not be written
        delivering, problem = _start_webhooks(store, sorted(created))
    return PostReceive(noted, delivering, problem)


def _start_webhooks(store: Store, tags: list[str]) -> tuple[list[str], str | None]:
    if not tags:
        return [], None
    from agentstage.errors import AgentstageError
    from agentstage.webhooks import start_background

    try:
        return (tags if start_background(store, tags) else []), None
    except AgentstageError as exc:
        return [], exc.message
    except OSError as exc:
        return [], f"the delivery could not be started: {exc}"
