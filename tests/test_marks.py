"""The marks index (marks.py) finds exactly the reverts and restores that reading every
pending commit finds, whatever the history: random sequences of edits, publishes,
reverts, restores, hand-typed trailers (true and false), side branches merged in,
staging moved back, and an index that is missing, corrupt or from another repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstage.agents import agent_state
from agentstage.marks import MEMO_DIR, trailers
from agentstage.publishing import _pending, _real_mark
from agentstage.store import Store
from conftest import git, sample_repo

AGENT = "billing-support"


def reference(store: Store, agent: str, staging: str, production: str | None
              ) -> tuple[bool, dict[str, list[str]]]:
    """What publish found before the index: every commit since production, read."""
    found: dict[str, list[str]] = {"reverts": [], "restores": []}
    if production is None:
        return True, found
    ancestor = production == staging
    for oid, message, parents in store.walk(staging, production):
        ancestor = ancestor or production in parents
        for key, tag in trailers(message):
            if tag.startswith(agent + "/") and tag not in found[key] and \
                    _real_mark(store, agent, oid, parents, key, tag):
                found[key].append(tag)
    return ancestor, found


def agree(repo: Path) -> None:
    store = Store.open(repo)
    state = agent_state(store, AGENT)
    ancestor, found = _pending(store, AGENT, state.staging, state.production)
    want_ancestor, want = reference(store, AGENT, state.staging, state.production)
    assert ancestor == want_ancestor
    if ancestor:
        assert {k: sorted(v) for k, v in found.items()} == \
            {k: sorted(v) for k, v in want.items()}


def memo(repo: Path) -> Path:
    return repo / ".git" / MEMO_DIR / f"{AGENT}.json"


def temperature(repo: Path) -> float:
    text = (repo / "agents" / AGENT / "agent.yaml").read_text()
    line = next(x for x in text.splitlines() if "temperature:" in x)
    return float(line.split(":")[1])


OPS = st.lists(st.sampled_from(["edit", "publish", "revert", "restore", "true-trailer",
                                "false-trailer", "branch", "rewind", "corrupt", "foreign"]),
               min_size=4, max_size=14)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_index_finds_what_reading_every_commit_finds(ops: list[str], run: Any,
                                                          tmp_path_factory: Any) -> None:
    base = tmp_path_factory.mktemp("marks")
    repo = sample_repo(base)
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    for step, op in enumerate(ops, 1):
        version = int(agent_state(Store.open(repo), AGENT).version)
        if op == "edit":
            value = round((temperature(repo) + 0.07) % 1, 2)
            run("set", AGENT, f"model.temperature={value}", "-m", f"edit {step}", repo=repo)
        elif op == "publish":
            run("publish", AGENT, "-m", f"publish {step}", repo=repo)
        elif op == "revert" and version >= 2:
            run(op, AGENT, f"v{version}", "-m", f"{op} {step}", repo=repo)
        elif op == "restore":
            run(op, AGENT, "v1", "-m", f"{op} {step}", repo=repo)
        elif op == "true-trailer" and version >= 1:
            # by hand: restore v1's snapshot and say so in the message
            git(repo, "checkout", "-q", f"{AGENT}/v1", "--", f"agents/{AGENT}")
            git(repo, "commit", "-q", "--allow-empty", "-m",
                f"Back to v1 by hand\n\nAgentstage-Restore: {AGENT}/v1")
        elif op == "false-trailer":
            (repo / "notes.txt").write_text(f"step {step}\n")
            git(repo, "add", "notes.txt")
            git(repo, "commit", "-q", "-m",
                f"Unrelated\n\nAgentstage-Revert: {AGENT}/v1\nAgentstage-Restore: {AGENT}/v1")
        elif op == "branch":
            git(repo, "checkout", "-q", "-b", f"side-{step}")
            git(repo, "checkout", "-q", f"{AGENT}/v1", "--", f"agents/{AGENT}")
            git(repo, "commit", "-q", "--allow-empty", "-m",
                f"Side restore\n\nAgentstage-Restore: {AGENT}/v1")
            git(repo, "checkout", "-q", "staging")
            agree(repo)  # the side branch is indexed only once it is reachable
            git(repo, "merge", "-q", "--no-edit", "-X", "theirs", f"side-{step}")
        elif op == "rewind":
            store = Store.open(repo)
            production = agent_state(store, AGENT).production
            head = git(repo, "rev-parse", "staging")
            if production is not None and head != production:
                agree(repo)
                git(repo, "reset", "-q", "--hard", "staging~1")
                if not store.is_ancestor(production, git(repo, "rev-parse", "staging")):
                    git(repo, "reset", "-q", "--hard", head)
        elif op == "corrupt":
            memo(repo).parent.mkdir(exist_ok=True)
            memo(repo).write_text('{"version": 1, "production": [1], "marks"')
        elif op == "foreign":
            store = Store.open(repo)
            production = agent_state(store, AGENT).production
            memo(repo).parent.mkdir(exist_ok=True)
            memo(repo).write_text(json.dumps(
                {"version": 1, "production": production, "tip": "1" * 40, "marks": [
                    ["2" * 40, [], "reverts", f"{AGENT}/v1"]]}))
        agree(repo)


def test_a_publish_reads_only_the_commits_since_the_last_answer(run: Any, repo: Path
                                                                 ) -> None:
    """The memo keeps the last answer (production, staging, marks between); the next
    publish reads only the commits since that staging, and none before."""
    assert run("publish", AGENT, "-m", "first", repo=repo).code == 0
    for n in range(30):
        run("set", AGENT, f"model.max_tokens={500 + n}", "-m", f"edit {n}", repo=repo)
    assert run("publish", AGENT, "-m", "second", repo=repo).code == 0
    assert run("restore", AGENT, "v1", "-m", "back", repo=repo).code == 0
    result = run("publish", AGENT, "-m", "third", "--format", "json", repo=repo)
    assert result.code == 0, result.err
    assert result.json()["restores"] == [f"{AGENT}/v1"]
    kept = json.loads(memo(repo).read_text())
    staging = git(repo, "rev-parse", "staging")
    assert kept["tip"] == staging and kept["production"] == git(repo, "rev-parse",
                                                                 f"{AGENT}/v2^{{commit}}")
    assert [m[2:] for m in kept["marks"]] == [["restores", f"{AGENT}/v1"]]
    # the restore is in production now: the next publish does not claim it again, and
    # reads only the one commit made since
    run("set", AGENT, "model.max_tokens=999", "-m", "one more", repo=repo)
    walked: list[str] = []
    real = Store.walk

    def counting(self: Store, newest: str, stop: str | None) -> Any:
        for item in real(self, newest, stop):
            walked.append(item[0])
            yield item

    Store.walk = counting  # type: ignore[method-assign]
    try:
        result = run("publish", AGENT, "-m", "fourth", "--format", "json", repo=repo)
    finally:
        Store.walk = real  # type: ignore[method-assign]
    assert result.code == 0, result.err
    assert (result.json()["restores"], result.json()["reverts"]) == ([], [])
    assert walked == [git(repo, "rev-parse", "staging")]
