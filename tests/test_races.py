"""Races: 16 real processes publish and edit the same two agents at once.

Every round starts 16 `agentstage` processes together, each a `publish` or a `set`
of one of two agents, and waits for them all. Afterwards: no acknowledged edit is
lost, versions are contiguous and unique, tags and production agree, every tag
descends from the one before, `git fsck --strict` is clean, and every loser exited
3 or 5 with an `error:` line. AGENTSTAGE_STRESS=1 runs many more rounds.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

from conftest import git

STRESS = os.environ.get("AGENTSTAGE_STRESS") == "1"
WORKERS = 16
ROUNDS = int(os.environ.get("AGENTSTAGE_RACE_ROUNDS", "40" if STRESS else "2"))
AGENTS = ("billing-support", "hr-helpdesk")


class Outcome(NamedTuple):
    args: tuple[str, ...]
    code: int
    out: str
    err: str


def start(repo: Path, *args: str) -> tuple[tuple[str, ...], subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return args, proc


def race(repo: Path, rounds: int, seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    outcomes = []
    for r in range(rounds):
        procs = []
        for w in range(WORKERS):
            agent = rng.choice(AGENTS)
            if rng.random() < 0.5:
                procs.append(start(repo, "publish", agent, "-m", f"round {r} worker {w}",
                                   "--format", "json"))
            else:
                procs.append(start(repo, "set", agent, f"model.parameters.w{w}r{r}=v{w}-{r}",
                                   "--format", "json"))
        for args, proc in procs:
            out, err = proc.communicate(timeout=120)
            outcomes.append(Outcome(args, proc.returncode, out, err))
    return outcomes


def staging_config(repo: Path, agent: str) -> dict[str, Any]:
    from agentstage.agents import load_at
    from agentstage.store import STAGING, Store

    store = Store.open(repo)
    config = load_at(store, store.ref(STAGING), agent)
    assert config is not None
    return config


def check_invariants(repo: Path, outcomes: list[Outcome]) -> dict[str, int]:
    for o in outcomes:
        assert "Traceback" not in o.err, o
        if o.code != 0:
            assert o.code in (3, 5), o
            assert o.err.startswith("error: ") or "\nerror: " in o.err, o

    # No acknowledged edit lost: every `set` that exited 0 is on staging.
    for agent in AGENTS:
        params = staging_config(repo, agent)["model"]["parameters"]
        for o in outcomes:
            if o.code == 0 and o.args[0] == "set" and o.args[1] == agent:
                path, _, value = o.args[2].partition("=")
                key = path.rpartition(".")[2]
                assert params.get(key) == value, f"acknowledged {o.args} lost"
                assert json.loads(o.out)["commit"], o

    counts = {}
    for agent in AGENTS:
        published = sorted(json.loads(o.out)["version"] for o in outcomes
                           if o.code == 0 and o.args[:2] == ("publish", agent))
        tags = git(repo, "for-each-ref", "--format=%(refname:strip=2) %(objecttype)",
                   f"refs/tags/{agent}/").splitlines()
        assert all(t.endswith(" tag") for t in tags), tags  # annotated, never lightweight
        versions = sorted(int(t.split()[0].rpartition("/v")[2]) for t in tags)
        # contiguous, unique, and one acknowledged publish per version
        assert versions == list(range(1, len(versions) + 1)), versions
        assert published == versions, (published, versions)
        previous = None
        previous_tree = None
        for v in versions:
            body = git(repo, "cat-file", "-p", f"{agent}/v{v}")
            assert "agentstage-publish-record: 1" in body
            commit = git(repo, "rev-parse", f"{agent}/v{v}^{{commit}}")
            # exactly one publish per staging state: each version changes the agent
            tree = git(repo, "rev-parse", f"{commit}:agents/{agent}")
            assert tree != previous_tree, f"{agent}/v{v} publishes nothing new"
            previous_tree = tree
            for o in outcomes:
                if o.code == 0 and o.args[:2] == ("publish", agent) and \
                        json.loads(o.out)["version"] == v:
                    assert json.loads(o.out)["commit"] == commit
            if previous is not None:
                assert subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor",
                                       previous, commit]).returncode == 0, f"{agent}/v{v}"
            previous = commit
        if versions:
            assert git(repo, "rev-parse", f"production/{agent}") == previous
        else:
            assert git(repo, "rev-parse", "-q", "--verify", f"production/{agent}",
                       check=False) == ""
        counts[agent] = len(versions)
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0 and not fsck.stdout.strip(), fsck.stdout + fsck.stderr
    counts["sets"] = sum(o.code == 0 and o.args[0] == "set" for o in outcomes)
    counts["conflicts"] = sum(o.code == 5 for o in outcomes)
    counts["nothing"] = sum(o.code == 3 for o in outcomes)
    return counts


def test_sixteen_processes_on_a_bare_repository(bare: Path) -> None:
    outcomes = race(bare, ROUNDS, seed=1)
    counts = check_invariants(bare, outcomes)
    assert counts["sets"] > 0 and counts[AGENTS[0]] + counts[AGENTS[1]] > 0
    # the races really happened: some processes lost (a moved ref, or nothing left)
    assert counts["conflicts"] + counts["nothing"] > 0, counts


def test_sixteen_processes_on_a_checkout(repo: Path) -> None:
    outcomes = race(repo, ROUNDS, seed=2)
    counts = check_invariants(repo, outcomes)
    assert counts["sets"] > 0
    assert counts["conflicts"] + counts["nothing"] > 0, counts
    # the checkout follows staging: what is on disk and in the index is what staging holds
    assert git(repo, "status", "--porcelain") == ""


def test_refs_are_locked_then_checked(bare: Path, tmp_path: Path) -> None:
    """A writer that moves staging while an agentstage command holds it (between locking and
    checking) must fail; were the check made before the lock, both would succeed and the
    other writer's commit would be lost."""
    import time

    release = tmp_path / "release"
    other = git(bare, "commit-tree", "staging^{tree}", "-p", "staging", "-m", "someone else")
    before = git(bare, "rev-parse", "staging")
    env = {**os.environ, "AGENTSTAGE_PAUSE_AT": "refs:locked",
           "AGENTSTAGE_PAUSE_FILE": str(release)}
    proc = subprocess.Popen([sys.executable, "-m", "agentstage", "-C", str(bare), "set",
                             AGENTS[0], "model.temperature=0.5"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not Path(f"{release}.reached").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    moved = subprocess.run(["git", "-C", str(bare), "update-ref", "refs/heads/staging", other,
                            before], capture_output=True, text=True)
    release.touch()
    _out, err = proc.communicate(timeout=60)
    assert moved.returncode != 0 and "lock" in moved.stderr  # held: the other writer waits
    assert proc.returncode == 0, err
    assert git(bare, "rev-parse", "staging^") == before
