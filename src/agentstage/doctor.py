"""doctor: check a repository's agentstage state, and repair what can be repaired safely.

It reads every agent's refs and tags (unlike the other commands, which read one
agent's), so its cost grows with the repository: run it when something looks wrong,
or from a nightly job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agentstage.agents import (
    VERSION_RE,
    Versions,
    latest_version,
    load_at,
    resolve_identity,
    versions_of,
)
from agentstage.errors import AgentstageError
from agentstage.ids import is_agent_id
from agentstage.publishing import parse_record, read_record
from agentstage.store import PRODUCTION_PREFIX, STAGING, TAG_PREFIX, Store, production_ref
from agentstage.verify import record_problems


def _finding(kind: str, where: str, message: str, repair: str | None = None,
             fix: str | None = None, severity: str = "problem") -> dict[str, Any]:
    """One thing found: *repair* says what --repair does, *fix* the command a user runs;
    a "warning" does not make the repository unhealthy."""
    return {"kind": kind, "where": where, "message": message, "repairable": repair is not None,
            "repair": repair, "repaired": False, "fix": fix, "severity": severity}


def _behind(store: Store, staging: str, production: str, prod_ref: str
            ) -> dict[str, Any] | None:
    """In a clone whose staging is only behind the team's (which has the publish): a
    warning to pull, not a problem to merge."""
    up = store.upstream(STAGING)
    team = store.ref(up[1]) if up is not None else None
    if up is None or team is None or not store.is_ancestor(staging, team) \
            or not store.is_ancestor(production, team):
        return None
    short = up[1].removeprefix("refs/remotes/")
    return _finding("staging-behind", prod_ref,
                    f"staging is behind {short}, which has {prod_ref}: this clone has not "
                    "pulled the team's edits yet", fix=f"git pull --ff-only {up[0]}",
                    severity="warning")


def _agents_with_refs(store: Store) -> dict[str, Versions]:
    """agent -> its publish tags as they exist (and agents with only a production ref)."""
    found: dict[str, list[str]] = {}
    for ref in store.refs(TAG_PREFIX):
        owner = ref[len(TAG_PREFIX):].partition("/")[0]
        if is_agent_id(owner):
            found.setdefault(owner, []).append(ref)
    for ref in store.refs(PRODUCTION_PREFIX):
        found.setdefault(ref[len(PRODUCTION_PREFIX):], [])
    return {agent: versions_of(agent, refs) for agent, refs in found.items()}


def _check_names(versions: Versions, known: bool) -> list[dict[str, Any]]:
    """Refs in the agent's tag namespace that are not its versions: a name a publish never
    writes (which can block the next one: `<agent>/v2/x` stops `<agent>/v2` being made),
    and numbers past a gap (never counted up to: that would cost what the name says).
    Where no such agent is *known* (a team's own `release/2.0`), only a name that blocks
    a version is reported."""
    agent = versions.agent
    out: list[dict[str, Any]] = []
    for name in versions.strays:
        short = name.removeprefix(TAG_PREFIX)
        head, _, below = short.removeprefix(f"{agent}/").partition("/")
        if short == agent:
            why = f"a tag named like the agent blocks every publish of {agent}"
        elif below and VERSION_RE.fullmatch(head):
            why = f"it blocks the publish that would create {agent}/{head}"
        elif known:
            why = f"not a publish tag name ({agent}/v<N>)"
        else:
            continue
        out.append(_finding("stray-tag", name, f"{short}: {why}", fix=f"git tag -d {short}"))
    beyond = versions.beyond
    if beyond:
        shown = " ".join(f"{agent}/v{n}" for n in beyond[:10])
        more = f" (and {len(beyond) - 10} more)" if len(beyond) > 10 else ""
        out.append(_finding(
            "version-gap", f"{TAG_PREFIX}{agent}/",
            f"publish versions have gaps: missing {versions.missing()}; "
            f"{len(beyond)} tag{'s' if len(beyond) != 1 else ''} past the gap "
            f"{'are' if len(beyond) != 1 else 'is'} not counted as versions",
            fix=f"git fetch --tags (when the team has the missing ones), else remove the "
                f"tags past the gap: git tag -d {shown}{more}"))
    return out


def _check_records(store: Store, agent: str, numbers: tuple[int, ...]
                   ) -> list[dict[str, Any]]:
    """The records of tags past a gap (not versions, but still read and reported)."""
    out: list[dict[str, Any]] = []
    for number in numbers:
        name = f"{agent}/v{number}"
        try:
            info = store.tag(name)
            if info is not None:
                parse_record(info)
        except AgentstageError as exc:
            out.append(_finding("bad-tag", TAG_PREFIX + name, exc.message))
    return out


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
    for directory in store.interrupted_checkouts():
        findings.append(_finding(
            "interrupted-checkout", directory,
            "a command moved staging and was cut short while the checkout followed: the "
            "index and some files are still at the commit before (every edit of this agent "
            "would stop on 'uncommitted changes')",
            repair=f"bring {directory} in the checkout up to staging"))
    listed = _agents_with_refs(store)
    agents = {agent: list(range(1, v.latest + 1)) for agent, v in listed.items()
              if v.numbers or store.ref(production_ref(agent)) is not None}
    on_staging = set(store.list_agents(staging)) if staging is not None else set()
    for agent, versions in sorted(listed.items()):
        findings += _check_names(versions, agent in agents or agent in on_staging)
        if agent not in agents:
            continue
        findings += _check_agent(store, agent, agents[agent], staging)
        findings += _check_records(store, agent, versions.beyond)
    findings += _check_signatures(store, agents)
    if staging is not None:
        for agent in store.list_agents(staging):
            findings += _check_config(store, staging, agent, "staging")
    found = store.upstream(STAGING)
    if found is not None:
        findings += _check_remote(store, found[0], agents)
    findings += _check_server(store)
    return findings


def _check_signatures(store: Store, agents: dict[str, list[int]]) -> list[dict[str, Any]]:
    """Publish tags whose signature does not verify against the signers this machine
    knows (the policy's allowed signers, or gpg.ssh.allowedSignersFile; the gpg keyring),
    and unsigned ones when the policy requires signatures. Nothing when no signer is
    known: an SSH signature then cannot be checked."""
    from agentstage.signing import Checker

    checker = Checker.for_history(store)
    out: list[dict[str, Any]] = []
    for agent, versions in sorted(agents.items()):
        for version in versions:
            name = f"{agent}/v{version}"
            signature = checker.check(store.ref(TAG_PREFIX + name))
            if signature["verified"] is not False:
                continue
            what = f"is {signature['reason']}" if not signature["signed"] else \
                f"has a signature that does not verify: {signature['reason']}"
            out.append(_finding(
                "bad-signature", TAG_PREFIX + name, f"{name} {what}",
                fix=f"check it by hand: git tag -v {name}; if it came from elsewhere: "
                    f"git tag -d {name}"))
    return out


def _check_server(store: Store) -> list[dict[str, Any]]:
    """Where the server hooks are installed: the other server hooks, the git settings
    `hooks install --server` sets, and no symbolic ref around a protected ref."""
    from agentstage import hooks

    if not hooks.installed(store, "pre-receive"):
        return []
    out: list[dict[str, Any]] = []
    install = f"agentstage -C {store.git_dir} hooks install --server"
    for name in hooks.SERVER_HOOKS:
        if not hooks.installed(store, name):
            out.append(_finding("server-hook-missing", name,
                                f"the server hook {name} is not installed" + (
                                    ": who pushed each publish is not recorded"
                                    if name == "post-receive" else ""), fix=install))
    for setting in hooks.server_settings(store):
        if not setting["ok"]:
            out.append(_finding(
                "server-setting", setting["key"],
                f"{setting['key']} is {setting['found'] or 'not set'}, should be "
                f"{setting['value']}: {setting['why']}",
                fix=f"git -C {store.git_dir} config {setting['key']} {setting['value']}"))
    for symref in hooks.protected_symrefs(store):
        out.append(_finding(
            "protected-symref", symref["ref"],
            f"{symref['ref']} is a symbolic ref to {symref['target']}: a push through it "
            "reaches a protected ref under another name", fix=symref["fix"]))
    return out


def _check_remote(store: Store, remote: str, agents: dict[str, list[int]]
                  ) -> list[dict[str, Any]]:
    """This clone's publish tags and production refs against what *remote* holds now."""
    from agentstage.remote import remote_refs

    held = remote_refs(store, remote, ["refs/tags/*", f"{PRODUCTION_PREFIX}*"])
    if held is None:
        return [_finding("remote-unreachable", remote,
                         f"could not ask {remote} for its publishes (git ls-remote failed); "
                         "the checks against the team's server were skipped",
                         fix=f"git ls-remote {remote}", severity="warning")]
    out: list[dict[str, Any]] = []
    theirs: dict[str, list[int]] = {}
    for ref in held:
        owner, _, version = ref.removeprefix(TAG_PREFIX).partition("/")
        if ref.startswith(TAG_PREFIX) and is_agent_id(owner) and VERSION_RE.fullmatch(version):
            theirs.setdefault(owner, []).append(int(version[1:]))
    for agent in sorted(agents.keys() | theirs.keys()):
        prod = production_ref(agent)
        local_versions = set(agents.get(agent, []))
        forked, unpushed = [], []
        for number in sorted(local_versions):
            name = f"{TAG_PREFIX}{agent}/v{number}"
            if name not in held:
                unpushed.append(number)
            elif held[name] != store.ref(name):
                forked.append(number)
        if forked:
            tags = " ".join(f"{agent}/v{v}" for v in forked + unpushed)
            out.append(_finding(
                "forked-version", f"{TAG_PREFIX}{agent}/v{forked[0]}",
                f"{', '.join(f'{agent}/v{v}' for v in forked)} here differ"
                f"{'s' if len(forked) == 1 else ''} from {remote}'s: this clone published a "
                "version number the team had already used; the team's publish is the real one",
                fix=f"git tag -d {tags} && git update-ref -d {prod} && "
                    f"git fetch {remote} --tags (then publish again)"))
        elif unpushed:
            newest = store.tag(f"{agent}/v{unpushed[-1]}")
            target = newest.target if newest is not None else prod
            tags = " ".join(f"refs/tags/{agent}/v{v}" for v in unpushed)
            out.append(_finding(
                "unpushed-publish", f"{TAG_PREFIX}{agent}/v{unpushed[0]}",
                f"{', '.join(f'{agent}/v{v}' for v in unpushed)} "
                f"{'was' if len(unpushed) == 1 else 'were'} published in this clone but never "
                f"pushed to {remote}: the team does not see it",
                fix=f"git push --atomic {remote} {target}:{prod} {tags}"))
        missing = sorted(set(theirs.get(agent, [])) - local_versions)
        if missing:
            out.append(_finding(
                "missing-tag", f"{TAG_PREFIX}{agent}/v{missing[0]}",
                f"{remote} has publishes this clone has not fetched: "
                f"{', '.join(f'{agent}/v{v}' for v in missing)}",
                fix=f"git fetch {remote} --tags"))
        local = store.ref(prod)
        if local is not None and held.get(prod) not in (None, local) and not forked \
                and not unpushed and not store.is_ancestor(local, held[prod]):
            out.append(_finding(
                "production-disagrees", prod,
                f"the local {prod.removeprefix('refs/heads/')} is not on {remote}'s: it was "
                "moved here by other means than a publish the team has",
                fix=f"git update-ref -d {prod} (this clone reads production from the team's "
                    "tags)"))
    return out


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
    found = store.upstream(STAGING)
    if found is not None and versions:
        # A clone: a local production ref that is missing, or that the team's publishes
        # left behind, is not an interrupted publish; production is read from the tags.
        tracking = store.remote_ref(found[0], prod_ref)
        try:
            newest = store.tag(f"{agent}/v{versions[-1]}")
        except AgentstageError:  # a bad tag: a bad-tag finding below
            newest = None
        if newest is not None and (production is None or (
                tracking == newest.target and store.is_ancestor(production, newest.target))):
            production = newest.target
    # *versions* are 1..N, the agent's versions; the gaps are _check_names's
    previous: str | None = None
    latest = None
    newest_verifies = True
    for version in versions:
        name = f"{agent}/v{version}"
        try:
            info = store.tag(name)
            assert info is not None
            problems = record_problems(store, info, read_record(info)[1], deep=True)
        except AgentstageError as exc:
            out.append(_finding("bad-tag", TAG_PREFIX + name, exc.message))
            continue
        newest_verifies = not problems
        if problems:
            out.append(_finding(
                "unverified-record", TAG_PREFIX + name,
                f"{name} does not verify against the repository: {'; '.join(problems)}",
                fix=f"if it came from elsewhere: git tag -d {name}"))
        elif previous is not None and not store.is_ancestor(previous, info.target):
            out.append(_finding("not-fast-forward", TAG_PREFIX + name,
                                f"{name} does not descend from the publish before it"))
        previous = latest = info.target
    if latest is not None and production != latest and not newest_verifies:
        out.append(_finding(
            "tag-without-production", prod_ref,
            f"the newest tag {agent}/v{versions[-1]} is ahead of {prod_ref} but does not "
            "verify: production is not moved to it",
            fix=f"if it came from elsewhere: git tag -d {agent}/v{versions[-1]}"))
    elif latest is not None and production != latest:
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
            out.append(_behind(store, staging, production, prod_ref) or _finding(
                "not-fast-forward", prod_ref,
                f"{prod_ref} is not an ancestor of staging: the next publish will be refused "
                "until production is merged into staging"))
        out += _check_config(store, production, agent, prod_ref.removeprefix("refs/heads/"))
    return out


def _at_newest(store: Store, agent: str) -> bool:
    """Whether the agent's production ref is at its newest publish tag."""
    version = latest_version(store, agent)
    info = store.tag(f"{agent}/v{version}") if version else None
    return info is not None and store.ref(production_ref(agent)) == info.target


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
            elif finding["kind"] == "interrupted-checkout":
                if not store.complete_checkout(finding["where"]):
                    continue
            elif finding["kind"] == "tag-without-production":
                from agentstage.publishing import reconcile

                agent = finding["where"].removeprefix(PRODUCTION_PREFIX)
                # an agent published with others: their repair completed it too
                if not reconcile(store, agent, who) and not _at_newest(store, agent):
                    continue
            finding["repaired"] = True
    left = [f for f in findings if not f["repaired"] and f["severity"] == "problem"]
    return {"healthy": not left, "findings": findings}
