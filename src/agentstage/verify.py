"""A publish record is checked against the repository before it is believed.

A tag's message is text anyone with push access to a repository (or a fork) can write.
What it claims is compared with what git holds: the agent and version against the tag's
name, `previous` against the tag before it, `staging_commit` against the tag's commit,
the reverts and restores against the tags they name, and the changes against the two
trees: cheaply (a change is claimed only in a file that differs) for every entry shown,
and in full (the field changes recomputed and compared) with *deep*, as `doctor` and
completing an interrupted publish do.
"""

from __future__ import annotations

from typing import Any

from agentstage.errors import AgentstageError
from agentstage.layout import SECTION_ORDER
from agentstage.store import Store, TagInfo

FILE_OF = {"settings": "agent.yaml", "instructions": "instructions.yaml",
           "knowledge": "knowledge.yaml", "tools": "tools.yaml", "guardrails": "guardrails.yaml"}


def record_problems(store: Store, info: TagInfo, record: dict[str, Any],
                    deep: bool = False) -> list[str]:
    """What the record of publish tag *info* claims that the repository does not show;
    empty when it verifies."""
    agent, _, version_text = info.name.partition("/v")
    version = int(version_text) if version_text.isdigit() and len(version_text) < 10 else 0
    problems = []
    if record.get("agent") != agent:
        problems.append(f"the record names agent {record.get('agent')!r}, the tag {agent!r}")
    if record.get("version") != version:
        problems.append(f"the record says version {record.get('version')!r}, the tag "
                        f"v{version}")
    if record.get("staging_commit") not in (None, info.target):
        problems.append("the record's staging commit is not the commit the tag points at")
    expected_previous = f"{agent}/v{version - 1}" if version > 1 else None
    if record.get("previous") != expected_previous:
        problems.append(f"the record names {record.get('previous')!r} as the publish before, "
                        f"not {expected_previous!r}")
    before: str | None = None
    if expected_previous is not None:
        try:
            previous = store.tag(expected_previous)
        except AgentstageError as exc:
            return [*problems, f"the publish before it is not readable: {exc.message}"]
        if previous is None:
            return [*problems, f"the publish before it ({expected_previous}) is not in this "
                    "repository (git fetch --tags)"]
        before = previous.target
        if not store.is_ancestor(before, info.target, remember=True):
            problems.append(f"its commit does not descend from {expected_previous}'s")
        if record.get("production_before") not in (None, before):
            problems.append(f"the record's production before is not {expected_previous}'s "
                            "commit")
    problems += _marks(store, agent, version, record)
    release = record.get("release")
    if release is not None and (not isinstance(release, list) or info.name not in release
                                or not all(isinstance(t, str) for t in release)
                                or len({str(t).partition("/v")[0] for t in release})
                                != len(release)):
        problems.append("the record's release is not a list of tags of distinct agents "
                        "naming this one")
    if "approvals" in record:  # each listed approval is one of the published content
        from agentstage.approvals import record_problems as approval_problems

        problems += approval_problems(store, agent, info.target, record["approvals"], deep)
    changes = record.get("changes")
    if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
        return [*problems, "the record's changes are not a list of changes"]
    try:
        problems += _changes(store, agent, before, info.target, changes, deep)
    except AgentstageError as exc:
        problems.append(f"the published configuration cannot be read: {exc.message}")
    return problems


def _marks(store: Store, agent: str, version: int, record: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("reverts", "restores"):
        named = record.get(key, [])
        if not isinstance(named, list):
            problems.append(f"the record's {key} are not a list")
            continue
        for tag in named:
            owner, _, n = str(tag).partition("/v")
            if owner != agent or not n.isdigit() or len(n) > 9 or not 0 < int(n) < version:
                problems.append(f"the record {key} {tag!r}, which is not an earlier publish "
                                f"of {agent}")
            elif store.ref(f"refs/tags/{tag}") is None:
                problems.append(f"the record {key} {tag}, which is not in this repository")
    return problems


def changes_problems(store: Store, agent: str, before: str | None, after: str,
                     changes: list[Any]) -> list[str]:
    """The cheap check of a record's changes (for the server hook): what it claims that
    the two trees do not show."""
    if not all(isinstance(c, dict) for c in changes):
        return ["the record's changes are not a list of changes"]
    return _changes(store, agent, before, after, changes, deep=False)


def _changes(store: Store, agent: str, before: str | None, after: str,
             changes: list[dict[str, Any]], deep: bool) -> list[str]:
    old = store.agent_file_ids(before, agent) if before else None
    new = store.agent_file_ids(after, agent)
    differs = {section for section, file in FILE_OF.items()
               if (old or {}).get(file) != (new or {}).get(file)}
    claimed = {str(c.get("section")) for c in changes}
    problems = [f"the record claims changes to {section}, whose file did not change"
                for section in SECTION_ORDER if section in claimed - differs]
    problems += [f"the record claims changes in an unknown section {s!r}"
                 for s in sorted(claimed - set(SECTION_ORDER))]
    if not deep or problems:
        return problems
    from agentstage.agents import load_at
    from agentstage.semdiff import diff_configs

    a, b = load_at(store, before, agent), load_at(store, after, agent)
    actual = [c.as_json() for c in diff_configs(a, b)]
    if _key(actual) != _key(changes):
        problems.append("the record's changes are not the changes between the two "
                        "publishes")
    return problems


def _key(changes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((str(c.get("section")), str(c.get("path")), str(c.get("change")))
                  for c in changes)
