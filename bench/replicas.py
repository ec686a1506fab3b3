"""The replicas' rows of the benchmark: `agentstage serve --remote origin` in front of one
bare central repository (README: Running several servers).

    .venv/bin/python bench/replicas.py            # 200 generated agents, 15 s a phase
    .venv/bin/python bench/replicas.py --quick    # 4 s a phase

One bare central repository (a copy of the 200-agent generated repository) with
agentstage's server hooks (`hooks install --server`) and a permissive policy (anyone edits;
every push is checked for valid configurations), and bare clones of it, each served by a real
`agentstage serve --remote origin` process. Clients are threads, each on its own kept-alive
http.client connection and its own agent, sending `PATCH /api/v2/agents/{id}/fields`
(`model.max_tokens`, a new value each time: one commit, pushed to the central before the
answer). Phases: one client through one replica (an edit alone, uncontended); --clients
clients through one replica, then through three, each for --seconds; then `git push` alone
of one edit-sized commit from a bare clone to the same central repository, with its hooks
and without them, to name the push's share of an edit. run.py calls this unless given
--no-replicas.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serve import Served

SIZE = (200, 1000, 100, 50)  # agents, commits, tags, hot publishes: run.py's --quick size
CLIENTS = 8
REMOTE_USER = "bench"  # who the central hook sees pushing: an admin, an editor
POLICY = f"admins: [{REMOTE_USER}]\neditors: [\"*\"]\npublishers: {{}}\n"


def agentstage() -> str:
    return str(Path(sys.executable).parent / "agentstage")


def call(cmd: Sequence[str], env: dict[str, str]) -> str:
    done = subprocess.run(list(cmd), capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)!r} exited {done.returncode}:\n{done.stderr}")
    return done.stdout.strip()


class World:
    """The central repository with the server hooks, and the agents the clients edit."""

    def __init__(self, cached: Path, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, {**env, "REMOTE_USER": REMOTE_USER}
        self.central = tmp / "central.git"
        shutil.copytree(cached, self.central, symlinks=True)
        call([agentstage(), "-C", str(self.central), "hooks", "install", "--server"], self.env)
        # a permissive policy: `serve --remote` fetches refs/meta/agentstage and fails
        # when the central repository has none
        (tmp / "policy.yaml").write_text(POLICY)
        call([agentstage(), "-C", str(self.central), "policy", "set", str(tmp / "policy.yaml")],
             self.env)
        names = call(["git", "-C", str(self.central), "ls-tree", "--name-only",
                      "staging:agents"], self.env).split()
        self.agents = names
        self.clones = 0
        self.step = 0  # every edit sets model.max_tokens to a value not set before
        self.step_lock = threading.Lock()

    def clone(self) -> Path:
        self.clones += 1
        path = self.tmp / f"clone{self.clones}.git"
        call(["git", "clone", "-q", "--bare", str(self.central), str(path)], self.env)
        return path

    def value(self) -> int:
        with self.step_lock:
            self.step += 1
            return 1001 + 2 * self.step  # odd: never a generated value (512 + 64k)

    def staging(self) -> str:
        return call(["git", "-C", str(self.central), "rev-parse", "staging"], self.env)


def edit(conn: http.client.HTTPConnection, host: str, agent: str, value: int
         ) -> tuple[int, float, bytes]:
    """One field edit: (status, ms, body)."""
    body = json.dumps({"set": {"model.max_tokens": value}, "message": "bench replica edit"})
    started = time.perf_counter()
    conn.request("PATCH", f"/api/v2/agents/{agent}/fields", body.encode(),
                 {"host": host, "content-type": "application/json"})
    r = conn.getresponse()
    out = r.read()
    return r.status, (time.perf_counter() - started) * 1000, out


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of *values*."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


def drive(world: World, replicas: list[Served], clients: int, seconds: float | None,
          count: int | None = None) -> dict[str, Any]:
    """*clients* threads, client n on replica n % len(replicas) and agent n, editing for
    *seconds* (or *count* edits each), after one untimed edit each."""
    times: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    refused: list[str] = []  # the first answers that were not 2xx
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(n: int) -> None:
        server = replicas[n % len(replicas)]
        host = f"{server.host}:{server.port}"
        agent = world.agents[n % len(world.agents)]
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
            for _attempt in range(5):  # warm-up, untimed; all clients start at once, so
                status, _, _ = edit(conn, host, agent, world.value())  # a 409 is tried again
                if status != 409:
                    break
                time.sleep(0.2)
            if status >= 300:
                raise RuntimeError(f"warm-up edit of {agent} answered {status}")
        except Exception as exc:  # reported below
            errors.append(f"client {n}: {exc!r}")
            start.wait()
            return
        conn.close()  # reopened by the first timed edit: the server drops connections idle 5 s
        start.wait()
        done = 0
        while (count is None or done < count) and (
                seconds is None or time.perf_counter() < deadline[0]):
            try:
                status, ms, body = edit(conn, host, agent, world.value())
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"client {n}: {exc!r}")
                return
            done += 1
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status < 300:
                    times.append(ms)
                elif len(refused) < 3:
                    refused.append(f"{status} {body[:300].decode(errors='replace')}")
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    deadline[0] = began + (seconds or 0.0)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise SystemExit("bench: " + "; ".join(errors[:5]))
    if not times:
        raise SystemExit(f"bench: no edit through {len(replicas)} replica(s) succeeded: "
                         f"statuses {statuses}, first answers {refused}")
    return {"replicas": len(replicas), "clients": clients, "seconds": round(elapsed, 2),
            "edits": len(times), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "edits_per_s": round(len(times) / elapsed, 2),
            "p50_ms": round(percentile(times, 50), 1), "p99_ms": round(percentile(times, 99), 1),
            "refused": refused}


def push_alone(world: World, runs: int) -> dict[str, float]:
    """`git push --atomic` (as the replica runs it) of one commit changing one field of one
    agent, from a bare clone to the central repository: median ms with its hooks and with
    none. Each commit is made untimed by `agentstage set` in the clone."""
    clone = world.clone()
    agent = world.agents[0]
    push = ["git", "-C", str(clone), "push", "-q", "--atomic", "--porcelain", str(world.central),
            "staging:refs/heads/staging"]

    def median_push() -> float:
        times = []
        for n in range(runs + 1):
            call([agentstage(), "-C", str(clone), "set", agent,
                  f"model.max_tokens={world.value()}", "-m", "bench push"], world.env)
            started = time.perf_counter()
            call(push, world.env)
            if n:
                times.append((time.perf_counter() - started) * 1000)
        return percentile(times, 50)

    with_hooks = median_push()
    hooks = world.central / "hooks"
    aside = world.tmp / "hooks-aside"
    hooks.rename(aside)
    hooks.mkdir()
    try:
        without = median_push()
    finally:
        shutil.rmtree(hooks)
        aside.rename(hooks)
    return {"with_hooks_ms": round(with_hooks, 1), "without_hooks_ms": round(without, 1),
            "runs": runs}


def measure(cached: Path, env: dict[str, str], tmp: Path, seconds: float, serial: int,
            clients: int = CLIENTS, push_runs: int = 9) -> dict[str, Any]:
    world = World(cached, tmp, env)
    if len(world.agents) < clients:
        raise SystemExit(f"bench: {len(world.agents)} agents for {clients} clients")
    phases = []
    one = [Served(world.clone(), world.env, tmp / "replica-1.log", "--remote", "origin")]
    try:
        phases.append({"name": "1 client, 1 replica", **drive(world, one, 1, None, serial)})
        phases.append({"name": f"{clients} clients, 1 replica",
                       **drive(world, one, clients, seconds)})
    finally:
        for r in one:
            r.stop()
    three: list[Served] = []
    try:
        for n in range(3):
            three.append(Served(world.clone(), world.env, tmp / f"replica-3-{n}.log",
                                "--remote", "origin"))
        phases.append({"name": f"{clients} clients, 3 replicas",
                       **drive(world, three, clients, seconds)})
    finally:
        for r in three:
            r.stop()
    acknowledged = sum(p["edits"] + 1 for p in phases)  # with each client's warm-up edit
    push = push_alone(world, push_runs)
    alone = phases[0]["p50_ms"]
    return {"phases": phases, "push": {**push, "edit_alone_p50_ms": alone,
                                       "share": round(push["with_hooks_ms"] / alone, 3),
                                       "hooks_share": round((push["with_hooks_ms"]
                                                             - push["without_hooks_ms"]) / alone,
                                                            3)},
            "agents": len(world.agents), "acknowledged_edits": acknowledged,
            "central_staging": world.staging()}


def measure_size(env: dict[str, str], tmp: Path, quick: bool, seconds: float | None = None,
                 clients: int = CLIENTS) -> dict[str, Any]:
    """measure() on the cached 200-agent repository, with the default or --quick settings."""
    from generate import Size, ensure

    cached, meta = ensure(Size(*SIZE), log=lambda m: print(m, file=sys.stderr))
    tmp.mkdir(parents=True, exist_ok=True)
    result = measure(cached, env, tmp, seconds or (4.0 if quick else 15.0), 5 if quick else 20,
                     clients, 3 if quick else 9)
    result["size"] = meta
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = ["| field edits through `serve --remote origin` | edits/s | p50 ms | p99 ms | "
             "edits | statuses |", "|---|---:|---:|---:|---:|---|"]
    for p in result["phases"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in p["statuses"].items())
        lines.append(f"| {p['name']} | {p['edits_per_s']:.1f} | {p['p50_ms']:.1f} | "
                     f"{p['p99_ms']:.1f} | {p['edits']} | {statuses} |")
    push = result["push"]
    lines += ["", f"The push alone (`git push --atomic` of one edit's commit to the central "
              f"repository, median of {push['runs']}): {push['with_hooks_ms']:.1f} ms with "
              f"its hooks, {push['without_hooks_ms']:.1f} ms without; an edit alone through "
              f"a replica takes {push['edit_alone_p50_ms']:.1f} ms (p50), of which the push "
              f"is {push['share']:.0%} and the central hooks in it "
              f"{push['hooks_share']:.0%}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from generate import OUT
    from run import env

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 s a phase, fewer pushes")
    parser.add_argument("--seconds", type=float, help="each concurrent phase (default 15; "
                        "--quick 4)")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="concurrent clients")
    parser.add_argument("--out", type=Path, default=OUT / "replicas.json")
    a = parser.parse_args(argv)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="agentstage-bench-replicas-"))
    try:
        result = measure_size(env(), tmp, a.quick, a.seconds, a.clients)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.update(seconds=round(time.perf_counter() - started, 1),
                  loadavg=os.getloadavg())
    print(markdown(result), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"(written to {a.out}; {result['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
