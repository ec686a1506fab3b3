"""Crashes: kill -9 at every step boundary, and at random times, of publish, revert,
restore and set. Afterwards production and its tags agree (or the next command
repairs them and says so), staging holds the old or the new commit, `git fsck
--strict` is clean, and the next command succeeds.

Step boundaries are named crash points (AGENTSTAGE_CRASH_AT, see agentstage.faults);
random kills are real SIGKILLs. AGENTSTAGE_STRESS=1 runs hundreds of random trials.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import git

STRESS = os.environ.get("AGENTSTAGE_STRESS") == "1"
TRIALS = int(os.environ.get("AGENTSTAGE_CRASH_TRIALS", "400" if STRESS else "40"))
A, B = "billing-support", "hr-helpdesk"

PUBLISH_POINTS = ("publish:after-tag-object", "publish:after-tag")
EDIT_POINTS = ("edit:after-commit", "staging:after-move")


def cli(repo: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if crash_at:
        env["AGENTSTAGE_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                          env=env, capture_output=True, text=True, check=False)


def ref(repo: Path, name: str) -> str | None:
    return git(repo, "rev-parse", "-q", "--verify", name, check=False) or None


def parents(repo: Path, commit: str) -> list[str]:
    return git(repo, "rev-list", "--parents", "-n", "1", commit).split()[1:]


def assert_fsck_clean(repo: Path) -> None:
    done = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def versions(repo: Path, agent: str) -> list[int]:
    names = git(repo, "for-each-ref", "--format=%(refname:strip=2)", f"refs/tags/{agent}/")
    return sorted(int(n.rpartition("/v")[2]) for n in names.splitlines())


def assert_tags_agree(repo: Path, agent: str) -> None:
    """Versions v1..vN, each an annotated record descending from the one before, and
    production at vN's commit."""
    found = versions(repo, agent)
    assert found == list(range(1, len(found) + 1)), found
    previous = None
    for v in found:
        assert git(repo, "cat-file", "-t", f"refs/tags/{agent}/v{v}") == "tag"
        commit = git(repo, "rev-parse", f"{agent}/v{v}^{{commit}}")
        if previous:
            assert subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor",
                                   previous, commit], check=False).returncode == 0
        previous = commit
    assert ref(repo, f"refs/heads/production/{agent}") == previous


def tag_ahead(repo: Path, agent: str) -> bool:
    """The newest tag is ahead of production: an interrupted publish, to be repaired."""
    found = versions(repo, agent)
    if not found:
        return False
    newest = git(repo, "rev-parse", f"{agent}/v{found[-1]}^{{commit}}")
    return ref(repo, f"refs/heads/production/{agent}") != newest


def publish_twice(run: Any, repo: Path, agent: str) -> None:
    """v1, then one field changed and v2."""
    assert run("publish", agent, "-m", "one", repo=repo).code == 0
    assert run("set", agent, "model.temperature=0.7", repo=repo).code == 0
    assert run("publish", agent, "-m", "two", repo=repo).code == 0


# -- (a) every step boundary -----------------------------------------------------------------

COMMANDS = {
    "set": ("set", A, "model.parameters.crash=1"),
    "revert": ("revert", A, "v2"),
    "restore": ("restore", A, "v1"),
}

CASES = [("publish", p) for p in PUBLISH_POINTS] + [
    (command, p) for command in COMMANDS for p in EDIT_POINTS]


@pytest.fixture(params=["checkout", "bare"])
def layout(request: pytest.FixtureRequest, repo: Path, bare: Path) -> Path:
    return repo if request.param == "checkout" else bare


@pytest.mark.parametrize(("command", "point"), CASES)
def test_crash_at_each_step_boundary(command: str, point: str, layout: Path, run: Any,
                                     request: pytest.FixtureRequest) -> None:
    repo = layout
    checkout = (repo / ".git").is_dir()
    publish_twice(run, repo, A)
    if command == "publish":
        assert run("set", A, "model.temperature=0.9", repo=repo).code == 0
        args: tuple[str, ...] = ("publish", A, "-m", "three")
    else:
        args = COMMANDS[command]
    staging = ref(repo, "staging")
    production = ref(repo, f"refs/heads/production/{A}")

    done = cli(repo, *args, crash_at=point)
    assert done.returncode == 137, done.stderr

    assert_fsck_clean(repo)
    after = ref(repo, "staging")
    if point == "staging:after-move":
        assert after != staging and parents(repo, after) == [staging]  # the new commit
    else:
        assert after == staging  # the old one
    if point == "publish:after-tag":
        assert tag_ahead(repo, A)
        assert ref(repo, f"refs/heads/production/{A}") == production
    else:
        assert_tags_agree(repo, A)

    # The next command succeeds (and repairs an interrupted publish, saying so).
    if command == "publish":
        again = run(*args, repo=repo)
        if point == "publish:after-tag":
            assert again.code == 3, again.err  # v3 is live now: nothing left to do
            assert "warning: completed an interrupted publish" in again.err
        else:
            assert again.code == 0, again.err
            assert run("history", A, "--format", "json", repo=repo).json()[0]["version"] == 3
    else:
        done = run("set", A, "model.parameters.next=2", repo=repo)
        assert done.code == 0, done.err
        assert run("publish", A, "-m", "after the crash", repo=repo).code == 0
    assert_tags_agree(repo, A)
    assert_fsck_clean(repo)
    doctor = run("doctor", repo=repo)
    assert doctor.code == 0, doctor.out
    if checkout:
        assert git(repo, "status", "--porcelain") == ""


def test_doctor_repairs_an_interrupted_publish_and_says_so(bare: Path, run: Any) -> None:
    publish_twice(run, bare, A)
    assert run("set", A, "model.temperature=0.9", repo=bare).code == 0
    assert cli(bare, "publish", A, "-m", "three", crash_at="publish:after-tag").returncode == 137
    found = run("doctor", "--format", "json", repo=bare)
    assert found.code == 1
    assert [f["kind"] for f in found.json()["findings"]] == ["tag-without-production"]
    repaired = run("doctor", "--repair", repo=bare)
    assert repaired.code == 0, repaired.out
    assert repaired.out.startswith("repaired") and "healthy after repair" in repaired.out
    assert_tags_agree(bare, A)


# -- stale locks -------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["refs/heads/staging.lock",
                                  f"refs/heads/production/{A}.lock",
                                  f"refs/tags/{A}/v3.lock"])
def test_a_stale_ref_lock_is_a_clear_error_that_doctor_clears(bare: Path, lock: str,
                                                              run: Any) -> None:
    publish_twice(run, bare, A)
    path = bare / lock
    path.write_text("")
    before = git(bare, "for-each-ref")
    command: tuple[str, ...] = ("set", A, "model.temperature=0.9")
    if "staging" not in lock:
        command = ("publish", A, "-m", "x")
    if "staging" not in lock:
        assert run("set", A, "model.temperature=0.9", repo=bare).code == 0
        before = git(bare, "for-each-ref")
    started = time.monotonic()
    done = cli(bare, *command)
    assert time.monotonic() - started < 10  # never a silent wait
    assert done.returncode == 5, done.stderr
    assert done.stderr.startswith("error: a ref is locked: ") and lock in done.stderr
    assert "hint: " in done.stderr and "doctor --repair --lock-age 0" in done.stderr
    assert git(bare, "for-each-ref") == before  # nothing written, nothing overwritten
    assert path.exists()
    cleared = run("doctor", "--repair", "--lock-age", "0", repo=bare)
    assert cleared.code == 0, cleared.out
    assert "stale-lock" in cleared.out and not path.exists()
    assert run(*command, repo=bare).code == 0


def test_a_stale_index_lock_in_a_checkout_is_a_clear_error(repo: Path) -> None:
    (repo / ".git" / "index.lock").write_text("")
    before = ref(repo, "staging")
    done = cli(repo, "set", A, "model.temperature=0.9")
    assert done.returncode == 5, done.stderr
    assert "index.lock" in done.stderr and "hint: " in done.stderr
    assert ref(repo, "staging") == before


# -- (b) real SIGKILLs at random times ----------------------------------------------------------


def lock_files(repo: Path) -> list[Path]:
    git_dir = repo / ".git" if (repo / ".git").is_dir() else repo
    found = [p for p in (git_dir / "refs").rglob("*.lock")]
    found += [git_dir / n for n in ("packed-refs.lock", "HEAD.lock", "index.lock")
              if (git_dir / n).exists()]
    return found


def loose_objects(repo: Path) -> int:
    git_dir = repo / ".git" if (repo / ".git").is_dir() else repo
    return sum(1 for _ in (git_dir / "objects").glob("??/*"))


def pick(rng: random.Random, repo: Path, trial: int) -> tuple[str, ...]:
    agent = rng.choice((A, B))
    newest = versions(repo, agent)[-1]
    kind = rng.choice(("publish", "publish", "set", "set", "revert", "restore"))
    if kind == "set":
        return ("set", agent, f"model.parameters.t{trial}=x{trial}")
    if kind == "publish":
        return ("publish", agent, "-m", f"trial {trial}")
    if kind == "revert":
        return ("revert", agent, f"v{newest}")
    return ("restore", agent, f"v{rng.randint(1, newest)}")


def test_random_sigkills(layout: Path, run: Any) -> None:
    repo = layout
    checkout = (repo / ".git").is_dir()
    rng = random.Random(int(os.environ.get("AGENTSTAGE_CRASH_SEED", "7")))
    publish_twice(run, repo, A)
    publish_twice(run, repo, B)
    # How long a command takes here, so kills land across its whole life, writes included.
    timings = []
    for n in range(3):
        started = time.monotonic()
        assert cli(repo, "set", A, f"model.parameters.calibrate{n}=1").returncode == 0
        timings.append(time.monotonic() - started)
    span = statistics.median(timings)
    seen: Counter[str] = Counter()
    for trial in range(TRIALS):
        args = pick(rng, repo, trial)
        staging = ref(repo, "staging")
        objects = loose_objects(repo)
        refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
        proc = subprocess.Popen([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.75, 1.05) * span)
        proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            if git(repo, "for-each-ref", "--format=%(refname) %(objectname)") != refs:
                seen["killed after moving a ref"] += 1
            elif loose_objects(repo) != objects:
                seen["killed after writing objects"] += 1
            else:
                seen["killed before writing"] += 1
        else:
            seen["finished"] += 1
            assert proc.returncode in (0, 3, 5), (args, err)
            assert "Traceback" not in err
        check_after_kill(run, repo, args, staging, rng, seen)
        if checkout:
            if run("doctor", "--repair", repo=repo).code != 0:
                seen["doctor left a problem"] += 1
            assert git(repo, "status", "--porcelain") == "", args  # the checkout follows
    print(f"\n{TRIALS} random kills: {dict(seen)}")
    assert seen["finished"] < TRIALS  # the kills did land
    assert seen["killed after moving a ref"] + seen["killed after writing objects"] > 0, seen
    assert not seen["doctor left a problem"], seen


def check_after_kill(run: Any, repo: Path, args: tuple[str, ...], staging: str | None,
                     rng: random.Random, seen: Counter[str]) -> None:
    after = ref(repo, "staging")
    assert after == staging or parents(repo, after or "") == [staging], args
    assert_fsck_clean(repo)
    locks = lock_files(repo)
    if locks:
        seen["stale locks"] += 1
        if any(p.name == "staging.lock" for p in locks):
            done = run("set", args[1], "model.parameters.locked=1", repo=repo)
            assert done.code == 5 and "hint: " in done.err, done.err
        cleared = run("doctor", "--repair", "--lock-age", "0", repo=repo)
        assert "stale-lock" in cleared.out
        assert not lock_files(repo)
    for agent in (A, B):
        if tag_ahead(repo, agent):
            seen["interrupted publishes"] += 1
            if rng.random() < 0.5:
                done = run("publish", agent, "-m", "next", repo=repo)
                assert done.code in (0, 3), done.err
                assert "warning: completed an interrupted publish" in done.err
            else:
                done = run("doctor", "--repair", repo=repo)
                assert done.code == 0 and "repaired" in done.out, done.out
        assert_tags_agree(repo, agent)


# -- (c) fsync ------------------------------------------------------------------------------------


def test_the_store_turns_fsync_of_the_git_directory_on() -> None:
    # libgit2 has no getter for this option: record the call the store makes on import.
    probe = (
        "import sys, pygit2\ns = sys.modules['pygit2.settings']\n"
        "calls = []\n"
        "real = s.option\n"
        "s.option = lambda opt, *a: (calls.append((opt, *a)), real(opt, *a))[1]\n"
        "import agentstage.store\n"
        "print(calls)\n"
        "assert (pygit2.enums.Option.ENABLE_FSYNC_GITDIR, True) in calls, calls\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


def fsyncs(command: list[str]) -> int:
    done = subprocess.run(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", *command],
                          capture_output=True, text=True, check=False)
    if "PTRACE" in done.stderr or "Operation not permitted" in done.stderr:
        pytest.skip("ptrace is not permitted here")
    calls = 0
    for line in done.stderr.splitlines():
        fields = line.split()
        if fields and fields[-1] in ("fsync", "fdatasync"):
            calls += int(fields[3])
    return calls


@pytest.mark.skipif(not any((Path(d) / "strace").exists()
                            for d in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="strace is not installed")
def test_writes_are_fsynced(bare: Path) -> None:
    command = [sys.executable, "-m", "agentstage", "-C", str(bare)]
    assert fsyncs([*command, "set", A, "model.temperature=0.9"]) > 0
    assert fsyncs([*command, "publish", A, "-m", "synced"]) > 0
    plain = ("import pygit2, sys\nr = pygit2.Repository(sys.argv[1])\n"
             "r.references.create('refs/heads/plain', r.head.target)\n")
    assert fsyncs([sys.executable, "-c", plain, str(bare)]) == 0  # the count means something


@pytest.mark.parametrize("next_step", ["doctor", "set"])
def test_a_kill_inside_the_checkout_update_is_found_and_completed(
        repo: Path, run: Any, next_step: str) -> None:
    """Killed after one file of the checkout was written and before the index: every edit
    used to stop on 'uncommitted changes' while doctor said healthy."""
    done = cli(repo, "set", A, "model.temperature=0.5", crash_at="checkout:after-file")
    assert done.returncode == 137, done.stderr
    assert git(repo, "status", "--porcelain") != ""  # half-written: index and file disagree
    found = run("doctor", "--format", "json", repo=repo)
    assert found.code == 1
    assert [f["kind"] for f in found.json()["findings"]] == ["interrupted-checkout"]
    if next_step == "doctor":
        repaired = run("doctor", "--repair", repo=repo)
        assert repaired.code == 0, repaired.out
        assert "healthy after repair" in repaired.out
    else:
        again = run("set", A, "model.max_tokens=900", repo=repo)
        assert again.code == 0, again.err
        assert "completed an interrupted update of the checkout" in again.err
    assert git(repo, "status", "--porcelain") == ""
    assert run("doctor", repo=repo).code == 0
