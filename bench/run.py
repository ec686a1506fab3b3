"""The benchmark: agentstage against plain git on large synthetic repositories.

    .venv/bin/python bench/run.py            # default size: 2,000 agents, 20,000 commits
    .venv/bin/python bench/run.py --quick    # small sizes, under a minute

Prints a markdown table (agentstage, plain git doing the same work, ratio, target)
and a scaling table, and writes both as JSON (bench/out/results.json). Every figure
is the median of --runs runs after one untimed warm-up run. Writes happen on a
throwaway copy of the cached repository, and the refs they move are put back after
each run. See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pygit2
import replicas
import serve
from generate import OUT, ROOT, Size, ensure, scaled

from agentstage import agents, api_ops, hooks, publishing, rollback
from agentstage.agents import load_at
from agentstage.diskcache import CACHE_DIR
from agentstage.store import PRODUCTION_PREFIX, STAGING, Store, clear_caches

AUTHOR = "Bench Runner <bench@example.com>"
AGENTSTAGE = str(Path(sys.executable).parent / "agentstage")
SCALED_OPS = ("diff", "publish", "revert", "restore", "history (bench agent)",
              "history --author (all agents)", "validate push (one agent)",
              "load all production configs (first read)", "load all production configs")
FLAT_TARGETS = ("diff", "publish", "revert", "restore")


# -- timing ---------------------------------------------------------------------------------


def median_ms(fn: Callable[[], Any], runs: int, reset: Callable[[], None] | None = None
              ) -> float:
    """Median wall time of *fn* over *runs* runs, after one untimed warm-up; *reset*
    (untimed) puts the repository back after each run."""
    if os.environ.get("BENCH_TRACE"):
        print(f"  {time.strftime('%X')} {getattr(fn, '__name__', fn)}", file=sys.stderr)
    times = []
    for n in range(runs + 1):
        started = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - started
        if reset is not None:
            reset()
        if n:
            times.append(elapsed * 1000)
    return statistics.median(times)


def env() -> dict[str, str]:
    home = OUT / "home"
    home.mkdir(parents=True, exist_ok=True)
    out = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "AGENTSTAGE_"))}
    bindir = str(Path(sys.executable).parent)
    out.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1", AGENTSTAGE_AUTHOR=AUTHOR,
               PATH=bindir + os.pathsep + out.get("PATH", ""), LC_ALL="C")
    return out


def run(cmd: Sequence[str] | str, cwd: Path, stdin: bytes | None = None,
        ok: Sequence[int] = (0,), extra: dict[str, str] | None = None) -> bytes:
    done = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True,
                          shell=isinstance(cmd, str), env={**env(), **(extra or {})},
                          check=False)
    if done.returncode not in ok:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        raise SystemExit(f"bench: {shown!r} exited {done.returncode}:\n"
                         f"{done.stderr.decode(errors='replace')}")
    return done.stdout


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    return run(["git", *args], repo, stdin).decode().strip()


class Repo:
    """A throwaway copy of a cached repository, with the refs the benchmark moves."""

    def __init__(self, cached: Path, meta: dict[str, Any], tmp: Path, label: str) -> None:
        self.path = tmp / f"{label}-{cached.parent.name}"
        # what agentstage keeps on disk (diskcache.py) starts empty in every copy
        shutil.copytree(cached, self.path, symlinks=True,
                        ignore=shutil.ignore_patterns(CACHE_DIR))
        self.meta = meta
        self.bench, self.hot = meta["bench"], meta["hot"]
        self.version = meta["bench_versions"]
        self.staging = git(self.path, "rev-parse", STAGING)
        self.parent = git(self.path, "rev-parse", STAGING + "^")
        self.production = git(self.path, "rev-parse", PRODUCTION_PREFIX + self.bench)
        self.new_tag = f"refs/tags/{self.bench}/v{self.version + 1}"

    def reset(self) -> None:
        """Staging, the bench agent's production and its tags as generated."""
        lines = [f"update {STAGING} {self.staging}",
                 f"update {PRODUCTION_PREFIX}{self.bench} {self.production}"]
        if git(self.path, "for-each-ref", self.new_tag):
            lines.append(f"delete {self.new_tag}")
        git(self.path, "update-ref", "--stdin", stdin=("\n".join(lines) + "\n").encode())

    def store(self) -> Store:
        return Store.open(self.path)

    def forget(self) -> None:
        """What agentstage keeps, in the process and on disk: as if nothing was ever read."""
        clear_caches()
        shutil.rmtree(self.path / CACHE_DIR, ignore_errors=True)


# -- the operations -------------------------------------------------------------------------


def inproc_ops(r: Repo) -> dict[str, Callable[[], Any]]:
    """In-process operations; each opens the repository afresh, as a command does."""
    b, v = r.bench, r.version

    def load_all_production() -> int:
        store = r.store()
        n = 0
        for ref in store.refs(PRODUCTION_PREFIX):
            agent = ref[len(PRODUCTION_PREFIX):]
            if load_at(store, store.ref(ref), agent) is not None:
                n += 1
        return n

    update = hooks.RefUpdate(r.parent, r.staging, STAGING)
    return {
        "diff": lambda: publishing.diff_agent(r.store(), b),
        "publish": lambda: publishing.publish(r.store(), b, "bench publish", author=AUTHOR),
        "revert": lambda: rollback.revert(r.store(), b, f"v{v}", author=AUTHOR),
        "restore": lambda: rollback.restore(r.store(), b, "v2", author=AUTHOR),
        "history (hot agent)": lambda: publishing.history(r.store(), r.hot),
        "history (bench agent)": lambda: publishing.history(r.store(), b),
        "history --author (all agents)": lambda: publishing.history(
            r.store(), author=r.meta["author_filter"]),
        "validate push (one agent)": lambda: _no_refusal(
            hooks.check_push(r.store(), [update], None)),
        "load all production configs (first read)": load_all_production,
        "load all production configs": load_all_production,
        "load all production configs (warm)": load_all_production,
        "agents table (first read)": lambda: agents.agents_table(r.store()),
        "agents table (cold)": lambda: agents.agents_table(r.store()),
        "agents table (warm)": lambda: agents.agents_table(r.store()),
        "history page (hot agent, first 50)": lambda: api_ops.history_page(
            r.store(), r.hot, None, None, None, 50, None),
        "history page (hot agent, 50 from the middle)": lambda: api_ops.history_page(
            r.store(), r.hot, None, None, None, 50, f"{r.hot}/v{r.meta['hot_versions'] // 2}"),
    }


def _no_refusal(refusals: list[Any]) -> None:
    if refusals:
        raise SystemExit(f"bench: the push was refused: {refusals}")


WRITES = {"publish", "revert", "restore"}
# Cold rows: the process's caches (trees, paths, configurations by id; agentstage.store
# .clear_caches) are emptied first, as in a new process, and one run is timed (seconds
# at 2,000 agents). "First read" rows also empty what agentstage keeps on disk
# (diskcache.py), as if no process ever read these configurations; the plain cold rows
# come after them, so they find what the first read left, as every later process does.
# Every other row runs warm: one untimed run, then the median.
HEAVY = {"load all production configs (first read)", "load all production configs",
         "agents table (first read)", "agents table (cold)"}


# The rows that stand for one command (a new process) start each run with empty caches,
# as a command does; the rows of a long-running server (the warm ones, the history pages)
# keep them.
WARM = {"load all production configs (warm)", "agents table (warm)",
        "history page (hot agent, first 50)", "history page (hot agent, 50 from the middle)"}


def resetter(r: Repo, name: str) -> Callable[[], None] | None:
    """What puts things back (untimed) after each run of *name*."""
    if name in WARM:
        return None

    def reset() -> None:
        if name in WRITES:
            r.reset()
        clear_caches()

    return reset


def timed(r: Repo, name: str, fn: Callable[[], Any], runs: int,
          reset: Callable[[], None] | None) -> float:
    if name in HEAVY:
        r.forget() if name.endswith("(first read)") else clear_caches()
        started = time.perf_counter()
        fn()
        return (time.perf_counter() - started) * 1000
    return median_ms(fn, runs, reset)

REVERT_SH = """set -e
export GIT_INDEX_FILE="$TMPDIR/bench-index"
git read-tree refs/heads/staging
git diff {b}/v{p} {b}/v{v} -- agents/{b} | git apply --cached -R
tree=$(git write-tree)
commit=$(git commit-tree "$tree" -p refs/heads/staging -m 'Revert {b}/v{v}')
git update-ref refs/heads/staging "$commit" {old}
"""
RESTORE_SH = """set -e
export GIT_INDEX_FILE="$TMPDIR/bench-index"
git read-tree refs/heads/staging
git ls-tree -r {b}/v2 -- agents/{b} | git update-index --index-info
tree=$(git write-tree)
commit=$(git commit-tree "$tree" -p refs/heads/staging -m 'Restore {b} to {b}/v2')
git update-ref refs/heads/staging "$commit" {old}
"""
TAG_FORMAT = ("--format=%(refname) %(objectname) %(taggername) %(taggeremail) "
              "%(taggerdate:iso-strict)%0a%(contents)")


def git_ops(r: Repo, tmp: Path) -> dict[str, tuple[str, Callable[[], Any]]]:
    """The same work done by plain git commands: (what, how)."""
    p, b, v = r.path, r.bench, r.version
    extra = {"TMPDIR": str(tmp)}

    def publish() -> None:
        run(["git", "tag", "-a", f"{b}/v{v + 1}", "-m", "bench publish", STAGING], p)
        run(["git", "update-ref", PRODUCTION_PREFIX + b, STAGING, r.production], p)

    def load_all() -> None:
        refs = run(["git", "for-each-ref", "--format=%(objectname) %(refname:lstrip=3)",
                    PRODUCTION_PREFIX], p).decode().split("\n")
        files = ("agent.yaml", "instructions.yaml", "knowledge.yaml", "tools.yaml",
                 "guardrails.yaml")
        wanted = "".join(f"{oid}:agents/{agent}/{f}\n" for line in refs if line
                         for oid, agent in [line.split()] for f in files)
        run(["git", "cat-file", "--batch"], p, wanted.encode())

    def validate_push() -> None:
        run(["git", "merge-base", "--is-ancestor", r.parent, r.staging], p)
        run(["git", "diff-tree", "-r", "--name-only", r.parent, r.staging, "--", "agents/"], p)

    def listing() -> None:
        run(["git", "ls-tree", f"{STAGING}:agents"], p)
        run(["git", "for-each-ref", PRODUCTION_PREFIX, "refs/tags/"], p)

    hot_tags = ["git", "for-each-ref", "--count=51", "--sort=-v:refname", TAG_FORMAT,
                f"refs/tags/{r.hot}/"]
    return {
        "load all production configs (first read)": ("the same", load_all),
        "load all production configs (warm)": ("the same", load_all),
        "agents table (cold)": ("git ls-tree staging:agents + git for-each-ref production/ "
                                "tags/", listing),
        "agents table (first read)": ("the same", listing),
        "agents table (warm)": ("the same", listing),
        "history page (hot agent, first 50)": ("git for-each-ref --count=51 "
                                               "--sort=-v:refname refs/tags/HOT/",
                                               lambda: run(hot_tags, p)),
        "history page (hot agent, 50 from the middle)": ("the same", lambda: run(hot_tags, p)),
        "diff": ("git diff --stat production/A staging -- agents/A",
                 lambda: run(["git", "diff", "--stat", PRODUCTION_PREFIX + b, STAGING, "--",
                              f"agents/{b}"], p)),
        "publish": ("git tag -a A/vN + git update-ref production/A", publish),
        "revert": ("read-tree, git diff | git apply -R --cached, write-tree, commit-tree, "
                   "update-ref",
                   lambda: run(REVERT_SH.format(b=b, p=v - 1, v=v, old=r.staging), p,
                               extra=extra)),
        "restore": ("read-tree, ls-tree A/v2 | update-index, write-tree, commit-tree, "
                    "update-ref",
                    lambda: run(RESTORE_SH.format(b=b, old=r.staging), p, extra=extra)),
        "history (hot agent)": ("git for-each-ref refs/tags/HOT/ (tagger, date, message)",
                                lambda: run(["git", "for-each-ref", TAG_FORMAT,
                                             f"refs/tags/{r.hot}/"], p)),
        "history (bench agent)": ("git for-each-ref refs/tags/A/",
                                  lambda: run(["git", "for-each-ref", TAG_FORMAT,
                                               f"refs/tags/{b}/"], p)),
        "history --author (all agents)": ("git for-each-ref refs/tags/ (all, then filter)",
                                          lambda: run(["git", "for-each-ref", TAG_FORMAT,
                                                       "refs/tags/"], p)),
        "validate push (one agent)": ("git merge-base --is-ancestor + git diff-tree "
                                      "--name-only", validate_push),
        "load all production configs": ("git for-each-ref production/ | git cat-file "
                                        "--batch", load_all),
    }


def command_ops(r: Repo) -> list[tuple[str, list[str], bytes | None, str, list[str]]]:
    """Whole commands: (name, agentstage argv, stdin, what git does, git argv)."""
    p, b = str(r.path), r.bench
    push = f"{r.parent} {r.staging} {STAGING}\n".encode()
    return [
        ("`agentstage --help`", [AGENTSTAGE, "--help"], None, "git --help", ["git", "--help"]),
        ("`agentstage diff A`", [AGENTSTAGE, "-C", p, "diff", b], None,
         "git diff --stat production/A staging -- agents/A",
         ["git", "diff", "--stat", PRODUCTION_PREFIX + b, STAGING, "--", f"agents/{b}"]),
        ("`agentstage publish A`", [AGENTSTAGE, "-C", p, "publish", b, "-m", "bench"], None,
         "git tag -a + git update-ref", []),
        ("`agentstage history HOT`", [AGENTSTAGE, "-C", p, "history", r.hot], None,
         "git for-each-ref refs/tags/HOT/",
         ["git", "for-each-ref", TAG_FORMAT, f"refs/tags/{r.hot}/"]),
        ("`agentstage history --author`",
         [AGENTSTAGE, "-C", p, "history", "--author", r.meta["author_filter"]], None,
         "git for-each-ref refs/tags/", ["git", "for-each-ref", TAG_FORMAT, "refs/tags/"]),
        ("`agentstage hook pre-receive` (one agent)",
         [AGENTSTAGE, "-C", p, "hook", "pre-receive"], push,
         "git merge-base --is-ancestor + git diff-tree", []),
    ]


def startup_rows(r: Repo, runs: int) -> list[dict[str, Any]]:
    """Start-up (issue 13): whole commands against `python -c "import pygit2"`, target 2x.
    "Read before": the configurations are on disk from an earlier process (diskcache.py),
    as for every command after the first that reads them; "first read": nothing is (the
    disk cache emptied after each run, untimed), so the command validates the files and
    loads the validation library."""
    p, b = str(r.path), r.bench
    push = f"{r.parent} {r.staging} {STAGING}\n".encode()
    baseline = median_ms(lambda: run([sys.executable, "-c", "import pygit2"], r.path),
                         max(runs, 11))

    def forget_disk() -> None:
        shutil.rmtree(r.path / CACHE_DIR, ignore_errors=True)

    rows = []
    for name, argv, stdin in (
            ("`agentstage diff A`", [AGENTSTAGE, "-C", p, "diff", b], None),
            ("`agentstage hook pre-receive` (one agent)",
             [AGENTSTAGE, "-C", p, "hook", "pre-receive"], push)):
        for when, reset in (("read before", None), ("first read", forget_disk)):
            ms = median_ms(lambda a=argv, i=stdin: run(a, r.path, i), max(runs, 11), reset)
            rows.append(row(f"start-up: {name}, {when}", ms, baseline,
                            'python -c "import pygit2"', round(2 * baseline, 1)))
    return rows


# -- a real push through the server hook ----------------------------------------------------


def push_rows(r: Repo, tmp: Path, runs: int) -> list[dict[str, Any]]:
    """`git push` of one commit touching one agent to the copy, with agentstage's
    pre-receive hook installed and without any hook."""
    client = tmp / "client.git"
    if not client.exists():
        run(["git", "clone", "-q", "--bare", str(r.path), str(client)], tmp)
        run([AGENTSTAGE, "-C", str(client), "set", r.bench, "model.max_tokens=777",
             "-m", "bench push"], tmp)
    hook = r.path / "hooks" / "pre-receive"
    run([AGENTSTAGE, "-C", str(r.path), "hooks", "install", "--server"], tmp)
    push = ["git", "-C", str(client), "push", "-q", str(r.path), "staging"]
    with_hook = median_ms(lambda: run(push, tmp), runs, r.reset)
    hook.unlink()
    without = median_ms(lambda: run(push, tmp), runs, r.reset)
    return [row("`git push` to a server with the hook (one agent)", with_hook, without,
                "the same push, no hook", None)]


# -- tables ---------------------------------------------------------------------------------

TARGETS = {  # row -> ms
    "diff (in-process)": 20, "publish (in-process)": 20, "revert (in-process)": 20,
    "restore (in-process)": 20, "history (hot agent) (in-process)": 100,
    "agents table (warm) (in-process)": 50, "load all production configs (warm) "
    "(in-process)": 50, "history page (hot agent, first 50) (in-process)": 100,
    "history page (hot agent, 50 from the middle) (in-process)": 100,
    "`agentstage --help`": 150, "`agentstage diff A`": 300,
    "`agentstage hook pre-receive` (one agent)": 300,
}


def row(name: str, ms: float, git_ms: float | None, git_what: str, target: float | None
        ) -> dict[str, Any]:
    return {"operation": name, "agentstage_ms": round(ms, 2),
            "git_ms": round(git_ms, 2) if git_ms is not None else None,
            "ratio": round(ms / git_ms, 2) if git_ms else None, "git": git_what,
            "target_ms": target, "met": None if target is None else ms < target}


def measure_main(r: Repo, tmp: Path, runs: int, with_push: bool) -> list[dict[str, Any]]:
    rows = []
    gits = git_ops(r, tmp)
    for name, fn in inproc_ops(r).items():
        ms = timed(r, name, fn, runs, resetter(r, name))
        what, how = gits[name]
        git_ms = median_ms(how, runs, r.reset if name in WRITES else None)
        label = f"{name} (in-process)"
        rows.append(row(label, ms, git_ms, what, TARGETS.get(label)))
    for name, argv, stdin, what, git_argv in command_ops(r):
        ok = (0,)
        reset = r.reset if "publish" in name else None
        ms = median_ms(lambda a=argv, s=stdin, o=ok: run(a, r.path, s, o), runs, reset)
        if git_argv:
            git_ms = median_ms(lambda a=git_argv: run(a, r.path), runs)
        else:
            key = "publish" if "publish" in name else "validate push (one agent)"
            git_ms = median_ms(gits[key][1], runs, reset)
        rows.append(row(name, ms, git_ms, what, TARGETS.get(name)))
    rows += startup_rows(r, runs)
    if with_push:
        rows += push_rows(r, tmp, runs)
    return rows


def measure_scaling(sizes: list[Size], runs: int, tmp: Path) -> list[dict[str, Any]]:
    out = []
    for size in sizes:
        cached, meta = ensure(size, log=lambda m: print(m, file=sys.stderr))
        r = Repo(cached, meta, tmp, "scaling")
        ops = inproc_ops(r)
        ms = {name: timed(r, name, ops[name], runs, resetter(r, name))  # flat targets:
              for name in SCALED_OPS}                                    # measure_flat
        out.append({"agents": size.agents, "commits": size.commits, "tags": meta["tags"],
                    "ms": {k: round(v, 2) for k, v in ms.items()}})
        shutil.rmtree(r.path)
    base = out[0]["ms"]
    for entry in out:
        entry["ratio"] = {k: round(v / base[k], 2) if base[k] else None
                          for k, v in entry["ms"].items()}
    return out


def measure_flat(small: Size, large: Size, runs: int, tmp: Path) -> list[dict[str, Any]]:
    """The flat targets, smallest against largest size in pairs (small, large, small,
    large, ...), as farm-bench pairs commands: the machine's drift over the minutes
    between two rows of the scaling table then moves both sides alike."""
    repos = []
    for size in (small, large):
        cached, meta = ensure(size, log=lambda m: print(m, file=sys.stderr))
        repos.append(Repo(cached, meta, tmp, "flat"))
    out = []
    try:
        for op in FLAT_TARGETS:
            times: list[list[float]] = [[], []]
            for n in range(max(runs, 15) + 1):
                for side, r in enumerate(repos):
                    fn, reset = inproc_ops(r)[op], resetter(r, op)
                    started = time.perf_counter()
                    fn()
                    elapsed = (time.perf_counter() - started) * 1000
                    if reset is not None:
                        reset()
                    if n:  # the first pair is the untimed warm-up
                        times[side].append(elapsed)
            a, b = (statistics.median(t) for t in times)
            out.append({"operation": op, "small_ms": round(a, 2), "large_ms": round(b, 2),
                        "ratio": round(b / a, 2), "met": b / a <= 1.5,
                        "small": f"{small.agents} agents/{small.commits} commits",
                        "large": f"{large.agents} agents/{large.commits} commits"})
    finally:
        for r in repos:
            shutil.rmtree(r.path, ignore_errors=True)
    return out


def markdown(rows: list[dict[str, Any]], scaling: list[dict[str, Any]],
             flat: list[dict[str, Any]]) -> str:
    def cell(v: Any, fmt: str = "{:.1f}") -> str:
        return "–" if v is None else fmt.format(v)

    lines = ["| operation | agentstage ms | plain git ms | ratio | plain git does | target "
             "| met? |",
             "|---|---:|---:|---:|---|---:|---|"]
    for x in rows:
        met = "–" if x["met"] is None else ("met" if x["met"] else "**missed**")
        target = f"< {x['target_ms']} ms" if x["target_ms"] else "–"
        lines.append(f"| {x['operation']} | {cell(x['agentstage_ms'])} | {cell(x['git_ms'])} | "
                     f"{cell(x['ratio'], '{:.2f}x')} | {x['git'].replace('|', chr(92) + '|')} | "
                     f"{target} | {met} |")
    lines += ["", "Scaling (in-process, ms; in brackets the ratio to the first row):", "",
              "| agents | commits | tags | " + " | ".join(SCALED_OPS) + " |",
              "|---:|---:|---:|" + "---:|" * len(SCALED_OPS)]
    for s in scaling:
        cells = [f"{s['ms'][k]:.1f} ({s['ratio'][k]:.2f}x)" for k in SCALED_OPS]
        lines.append(f"| {s['agents']} | {s['commits']} | {s['tags']} | " + " | ".join(cells)
                     + " |")
    if flat:
        lines += ["", f"Scaling targets (largest within 1.5x of smallest; {flat[0]['small']} "
                  f"against {flat[0]['large']}, timed in pairs, medians):", ""]
    lines += [f"- {f['operation']}: {f['small_ms']:.1f} → {f['large_ms']:.1f} ms, "
              f"{f['ratio']:.2f}x — {'met' if f['met'] else '**missed**'}" for f in flat]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
        "python": platform.python_version(),
        "pygit2": f"{pygit2.__version__} (libgit2 {pygit2.LIBGIT2_VERSION})",
        "git": subprocess.run(["git", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, help="agents (default 2000; --quick 200)")
    parser.add_argument("--commits", type=int, help="staging commits (default 20000; "
                        "--quick 1000)")
    parser.add_argument("--tags", type=int, help="publish tags (default 5000; --quick 100)")
    parser.add_argument("--hot-publishes", type=int,
                        help="publishes of the hot agent (default 500; --quick 50)")
    parser.add_argument("--runs", type=int, help="runs per figure, median taken (default 5; "
                        "--quick 3)")
    parser.add_argument("--out", type=Path, default=OUT / "results.json",
                        help="where to write the JSON (default bench/out/results.json)")
    parser.add_argument("--quick", action="store_true", help="small sizes, < 60 s")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    parser.add_argument("--no-push", action="store_true", help="skip the real git push rows")
    parser.add_argument("--no-serve", action="store_true",
                        help="skip the server rows (HTTP, and delivery against nginx)")
    parser.add_argument("--no-replicas", action="store_true",
                        help="skip the replicas' rows (serve --remote against one central "
                             "repository)")
    a = parser.parse_args(argv)
    q = a.quick
    size = Size(a.agents or (200 if q else 2000), a.commits or (1000 if q else 20000),
                a.tags or (100 if q else 5000), a.hot_publishes or (50 if q else 500))
    runs = a.runs or (3 if q else 5)
    grid_agents = (20, 200) if q else (20, 200, 2000)
    grid_commits = (200, 1000) if q else (1000, 20000)
    started = time.perf_counter()
    load_before = os.getloadavg()
    cached, meta = ensure(size, log=lambda m: print(m, file=sys.stderr))
    # agentstage byte-compiled, as pip leaves an installed package: an editable install
    # under PYTHONDONTWRITEBYTECODE would compile its sources in every whole command
    run([sys.executable, "-m", "compileall", "-q", str(Path(agents.__file__).parent)], ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="agentstage-bench-"))
    try:
        r = Repo(cached, meta, tmp, "main")
        rows = measure_main(r, tmp, runs, not a.no_push)
        served = None if a.no_serve else serve.measure(r.path, r.bench, env(), max(runs, 15),
                                                        tmp)
        grid = [scaled(n, c, size.tags, size.hot) for c in grid_commits for n in grid_agents]
        scaling = [] if a.no_scaling else measure_scaling(grid, runs, tmp)
        flat = [] if a.no_scaling else measure_flat(grid[0], grid[-1], runs, tmp)
        replicated = None if a.no_replicas else replicas.measure_size(env(), tmp / "replicas", q)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(markdown(rows, scaling, flat))
    if served is not None:
        print("\n" + serve.markdown(served))
    if replicated is not None:
        print("\n" + replicas.markdown(replicated))
    missed = [x["operation"] for x in rows if x["met"] is False]
    if served is not None:
        missed += [x["operation"] for x in served["rows"] if not x["met"]]
        if served["delivery"].get("met") is False:
            missed.append("delivery (304s against nginx)")
    missed += [f"{f['operation']} scaling" for f in flat if not f["met"]]
    print(f"\nTargets missed: {', '.join(missed) if missed else 'none'}")
    result = {"machine": {**machine(), "loadavg_at_start": load_before}, "size": meta,
              "runs": runs, "quick": q, "rows": rows,
              "scaling": scaling, "scaling_targets": flat, "serve": served, "replicas": replicated,
              "missed": missed,
              "seconds": round(time.perf_counter() - started, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(f"(written to {a.out}; {result['seconds']} s; {m['cpu']}, {m['nproc']} CPUs, "
          f"load average {load_before[0]:.1f} at start, {m['loadavg'][0]:.1f} at end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
