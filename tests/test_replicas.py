"""Many servers, one git store: `agentstage serve --remote origin` replicas, real processes
on loopback ports, in front of one bare central repository with the server hooks and a
policy (README: Running several servers)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import git, sample_repo
from test_serve import AUTHOR_NAME, Server, server_env

AGENTS = ("billing-support", "sales-assistant")
LOCKED = "hr-helpdesk"  # the replicas may publish it by their own reading; the central says no
POLICY = f"""admins: [alice]
editors: ["*"]
publishers:
  billing-support: [alice, "{AUTHOR_NAME}"]
  sales-assistant: [alice, "{AUTHOR_NAME}"]
  {LOCKED}: ["{AUTHOR_NAME}"]
"""
CONVERGE_SECONDS = 5.0


class World:
    """A bare central repository with the server hooks and POLICY, and bare clones of it;
    every process pushes as alice (the hook's REMOTE_USER)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = server_env(base / "home", REMOTE_USER="alice")
        source = sample_repo(base, "source")
        self.central = base / "central.git"
        git(base, "init", "-q", "--bare", "-b", "staging", str(self.central))
        self.cli("hooks", "install", "--server", repo=self.central)
        git(source, "remote", "add", "origin", str(self.central))
        (base / "policy.yaml").write_text(POLICY)
        self.cli("policy", "set", str(base / "policy.yaml"), repo=source)
        done = subprocess.run(["git", "-C", str(source), "push", "-q", "--atomic", "origin",
                               "staging", "refs/meta/agentstage"], capture_output=True,
                              text=True, env=self.env, check=False)
        assert done.returncode == 0, done.stderr
        self.servers: list[Server] = []

    def cli(self, *args: str, repo: Path) -> str:
        done = subprocess.run([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                              capture_output=True, text=True, env=self.env, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def replica(self, name: str) -> Path:
        path = self.base / f"{name}.git"
        git(self.base, "clone", "-q", "--bare", str(self.central), str(path))
        return path

    def serve(self, path: Path, **extra: str) -> Server:
        server = Server(path, {**self.env, **extra}, "--remote", "origin")
        self.servers.append(server)
        return server

    def refs(self, repo: Path) -> str:
        """Staging, production and the tags, as `git for-each-ref` lists them."""
        return git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
                   "refs/heads/staging", "refs/heads/production/", "refs/tags/")

    def converged(self, *repos: Path) -> None:
        """Every repo's refs become the central's within CONVERGE_SECONDS."""
        deadline = time.monotonic() + CONVERGE_SECONDS
        while True:
            want = self.refs(self.central)
            behind = [r.name for r in repos if self.refs(r) != want]
            if not behind:
                return
            assert time.monotonic() < deadline, f"{behind} still differ from the central"
            time.sleep(0.1)

    def check_central(self) -> dict[str, int]:
        """Versions contiguous from 1, each production ref at its newest tag, fsck clean;
        the newest version of each agent."""
        done = subprocess.run(["git", "-C", str(self.central), "fsck", "--no-progress"],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "error" not in done.stderr, done.stderr
        newest = {}
        for agent in (*AGENTS, LOCKED):
            tags = git(self.central, "for-each-ref", "--format=%(refname:short)",
                       f"refs/tags/{agent}/").split()
            versions = sorted(int(t.rpartition("/v")[2]) for t in tags)
            assert versions == list(range(1, len(versions) + 1)), (agent, versions)
            production = git(self.central, "rev-parse", "-q", "--verify",
                             f"refs/heads/production/{agent}", check=False)
            if versions:
                assert production == git(self.central, "rev-parse",
                                         f"{agent}/v{versions[-1]}^{{commit}}"), agent
            else:
                assert production == "", agent
            newest[agent] = len(versions)
        return newest

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.stop()


def instruction_ids(world: World, agent: str) -> set[str]:
    text = git(world.central, "show", f"staging:agents/{agent}/instructions.yaml")
    return {line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.strip().startswith("- id:") or line.strip().startswith("id:")}


def add_instruction(client: httpx.Client, agent: str, ident: str) -> httpx.Response:
    return client.post(f"/api/v2/agents/{agent}/instructions",
                       json={"id": ident, "text": f"Follow rule {ident}."})


def test_one_replica_pushes_each_write_before_answering(world: World) -> None:
    path = world.replica("one")
    server = world.serve(path)
    with server.client() as http:
        done = add_instruction(http, AGENTS[0], "first-rule")
        assert done.status_code == 200, done.text
        assert "first-rule" in instruction_ids(world, AGENTS[0])
        assert git(world.central, "rev-parse", "staging") == done.json()["commit"]
        published = http.post(f"/api/v2/agents/{AGENTS[0]}/publish", json={"reason": "live"})
        assert published.status_code == 200, published.text
        assert published.json()["tag"] == f"{AGENTS[0]}/v1"
    assert world.check_central()[AGENTS[0]] == 1
    assert world.refs(path) == world.refs(world.central)
    # a push made elsewhere reaches the replica within a second or so
    other = world.base / "other"
    git(world.base, "clone", "-q", "-b", "staging", str(world.central), str(other))
    git(other, "commit", "-q", "--allow-empty", "-m", "an edit pushed by hand")
    pushed = subprocess.run(["git", "-C", str(other), "push", "-q", "origin", "staging"],
                            capture_output=True, text=True, env=world.env, check=False)
    assert pushed.returncode == 0, pushed.stderr
    world.converged(path)
    with server.client() as http:
        # the replica writes on top of what was pushed elsewhere
        done = add_instruction(http, AGENTS[1], "second-rule")
        assert done.status_code == 200, done.text
    assert git(world.central, "log", "-1", "--format=%s", "staging~1") == \
        "an edit pushed by hand"


def test_a_central_refusal_reaches_the_client_and_the_clone_is_put_back(world: World) -> None:
    path = world.replica("refused")
    server = world.serve(path)
    with server.client() as http:
        assert add_instruction(http, LOCKED, "locked-rule").status_code == 200
        before = world.refs(path)
        refused = http.post(f"/api/v2/agents/{LOCKED}/publish", json={"reason": "go"})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "policy"
        assert "alice" in error["message"] and "publisher" in error["message"], error
        assert "Traceback" not in refused.text
        assert world.refs(path) == before == world.refs(world.central)
        assert git(path, "tag", "-l", f"{LOCKED}/*") == ""
    world.check_central()


def test_three_replicas_sixteen_clients(world: World) -> None:
    paths = [world.replica(f"replica{n}") for n in range(3)]
    servers = [world.serve(p) for p in paths]
    events = [EventLog(s) for s in servers]
    acked: list[tuple[str, str]] = []  # (agent, instruction id) answered 2xx
    tags: list[str] = []  # publishes answered 2xx
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    rounds, clients = 3, 16
    started = time.monotonic()

    errors: list[str] = []

    def client(n: int) -> None:
        try:
            rounds_of(n)
        except Exception as exc:  # the test fails below, naming it
            errors.append(f"client {n}: {exc!r}")

    def rounds_of(n: int) -> None:
        with httpx.Client(base_url=servers[n % 3].url, timeout=120) as http:
            for r in range(rounds):
                agent = AGENTS[(n + r) % len(AGENTS)]
                ident = f"c{n}-r{r}"
                done = add_instruction(http, agent, ident)
                with lock:
                    statuses[done.status_code] = statuses.get(done.status_code, 0) + 1
                    if done.is_success:
                        acked.append((agent, ident))
                assert done.status_code in (200, 409), done.text
                if r % 2 == n % 2:
                    pub = http.post(f"/api/v2/agents/{agent}/publish",
                                    json={"reason": f"publish by c{n} r{r}"})
                    assert pub.status_code in (200, 409), pub.text
                    if pub.is_success:
                        with lock:
                            tags.append(pub.json()["tag"])
                            events_expected[pub.json()["tag"]] = time.monotonic()

    events_expected: dict[str, float] = {}
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    print(f"\n{len(acked)} edits and {len(tags)} publishes acknowledged of "
          f"{clients * rounds} edits in {elapsed:.1f} s; statuses {statuses}")
    assert len(acked) >= clients * rounds // 2, statuses  # most writes get through
    for agent in AGENTS:
        present = instruction_ids(world, agent)
        missing = [i for a, i in acked if a == agent and i not in present]
        assert not missing, f"acknowledged but not in the central staging: {missing}"
    log = set(git(world.central, "log", "--format=%s", "staging").splitlines())
    assert all(f"{a}: add instructions {i}" in log for a, i in acked)
    newest = world.check_central()
    assert len(tags) == len(set(tags))
    assert sorted(tags) == sorted(f"{a}/v{v}" for a in AGENTS for v in range(1, newest[a] + 1))
    world.converged(*paths)
    # every replica's event stream saw every publish, whichever replica made it
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not all(set(tags) <= e.seen.keys() for e in events):
        time.sleep(0.1)
    for log_ in events:
        assert set(tags) <= log_.seen.keys(), (sorted(tags), sorted(log_.seen))
    lags = [e.seen[t] - events_expected[t] for e in events for t in tags]
    print(f"event lag after the publish's answer: max {max(lags, default=0):.2f} s")
    assert max(lags, default=0) < 3.0  # two seconds by design; slack for a loaded machine
    for e in events:
        e.close()


class EventLog:
    """A reader of one server's event stream: tag -> when it was seen."""

    def __init__(self, server: Server) -> None:
        self.seen: dict[str, float] = {}
        self.client = httpx.Client(base_url=server.url, timeout=httpx.Timeout(5, read=None))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/api/v2/events") as response:
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        self.seen.setdefault(line[4:], time.monotonic())
        except (httpx.HTTPError, RuntimeError):
            pass

    def close(self) -> None:
        self.client.close()


def _crash(world: World, path: Path, point: str, request: Any) -> None:
    """A replica that dies (as kill -9 would) at *point* while serving *request*."""
    server = world.serve(path, AGENTSTAGE_CRASH_AT=point)
    with server.client() as http, pytest.raises(httpx.HTTPError):
        request(http)
    assert server.proc.wait(timeout=30) == 137
    server.stop()


def test_kill_9_loses_nothing_acknowledged(world: World) -> None:
    paths = [world.replica(f"replica{n}") for n in range(3)]
    servers = [world.serve(p) for p in paths]
    acked: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=servers[n % 3].url, timeout=60) as http:
            r = 0
            while not stop.is_set() and r < 40:
                agent, ident = AGENTS[n % 2], f"k{n}-r{r}"
                r += 1
                try:
                    done = add_instruction(http, agent, ident)
                    if r % 4 == 0:
                        http.post(f"/api/v2/agents/{agent}/publish", json={"reason": ident})
                except httpx.HTTPError:
                    continue  # the killed replica: not acknowledged
                if done.is_success:
                    with lock:
                        acked.append((agent, ident))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    servers[0].proc.kill()  # kill -9 in the middle of writes
    servers[0].proc.wait(timeout=10)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    for agent in AGENTS:
        present = instruction_ids(world, agent)
        assert not [i for a, i in acked if a == agent and i not in present]
    world.check_central()
    # a replica that died after its commit, before its push; and after a publish's tag,
    # before its push: neither reached the central, and each restart follows it again
    _crash(world, paths[0], "staging:after-move",
           lambda http: add_instruction(http, AGENTS[0], "never-acknowledged"))
    assert "never-acknowledged" not in instruction_ids(world, AGENTS[0])
    assert git(paths[0], "log", "-1", "--format=%s", "staging").endswith("never-acknowledged")
    restarted = world.serve(paths[0])
    world.converged(*paths)  # the commit only it had is gone: staging is the central's
    with restarted.client() as http:
        assert add_instruction(http, AGENTS[0], "to-publish").status_code == 200
    restarted.stop()
    _crash(world, paths[0], "publish:after-tag",
           lambda http: http.post(f"/api/v2/agents/{AGENTS[0]}/publish", json={"reason": "x"}))
    newest = world.check_central()
    assert world.refs(paths[0]) != world.refs(world.central)  # the half-done publish, here
    restarted = world.serve(paths[0])
    world.converged(*paths)  # caught up by itself, the unpushed tag gone
    with restarted.client() as http:
        assert add_instruction(http, AGENTS[0], "after-restart").status_code == 200
        done = http.post(f"/api/v2/agents/{AGENTS[0]}/publish", json={"reason": "again"})
        assert done.status_code == 200, done.text
        assert done.json()["version"] == newest[AGENTS[0]] + 1
    world.check_central()
    world.converged(*paths)
    assert acked  # the run acknowledged writes around the kill


def test_a_central_repository_without_a_policy(tmp_path: Path) -> None:
    """No refs/meta/agentstage on the central repository: a replica starts, follows and
    pushes all the same (its fetch asks for the policy by a pattern)."""
    env = server_env(tmp_path / "home", REMOTE_USER="alice")
    source = sample_repo(tmp_path, "source")
    central = tmp_path / "central.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "staging", str(central))
    git(source, "push", "-q", str(central), "staging")
    replica = tmp_path / "replica.git"
    git(tmp_path, "clone", "-q", "--bare", str(central), str(replica))
    server = Server(replica, env, "--remote", "origin")
    try:
        with server.client() as http:
            done = add_instruction(http, AGENTS[0], "no-policy-rule")
            assert done.status_code == 200, done.text
        assert git(central, "rev-parse", "staging") == done.json()["commit"]
    finally:
        assert server.stop() == 0, server.stderr
