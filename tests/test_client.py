"""`agentstage.client`, as a runtime uses it, against a real `agentstage serve`: production
with its ETag (a 304 when nothing changed), the local copy that answers while the server is
stopped, the event stream across a restart (the missed publish replayed), and `follow`."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentstage.cli import main
from agentstage.client import Client, ClientError, Event, Production, Unavailable
from test_serve import Server, sample_repo, server_env

AGENT = "hr-helpdesk"
WAIT = 30  # seconds: only so that a broken test ends; nothing here is timed


def cli(*args: str, repo: Path) -> None:
    assert main(["-C", str(repo), *args]) == 0


def publish(repo: Path, description: str) -> None:
    cli("set", AGENT, f"description={description}", "-m", description, repo=repo)
    cli("publish", AGENT, "-m", description, repo=repo)


def not_modified(server: Server) -> int:
    """How many 304s the server answered for an agent's production."""
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(r'route="/api/v2/agents/\{agent_id\}/production",status="304"\} (\d+)',
                      text)
    return int(found.group(1)) if found else 0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = sample_repo(tmp_path)
    publish(path, "first")
    return path


@pytest.fixture
def served(repo: Path, tmp_path: Path) -> Iterator[Server]:
    running = Server(repo, server_env(tmp_path / "home"))
    yield running
    assert running.stop() == 0, running.stderr


def test_production_with_etag_and_the_local_copy(served: Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    client = Client(served.url, cache_dir=cache)
    config = client.production(AGENT)
    assert isinstance(config, Production) and isinstance(config, dict)
    assert config["description"] == "first" and config["name"]
    assert (config.agent, config.version, config.tag) == (AGENT, 1, f"{AGENT}/v1")
    assert config.published_at and not config.offline and config.problem is None
    saved = json.loads((cache / f"{AGENT}.json").read_text())
    assert saved["etag"] == f'"{AGENT}/v1"' and saved["production"]["config"] == config
    assert [p.name for p in cache.iterdir()] == [f"{AGENT}.json"]  # no temporary file left
    # unchanged: the server answers 304, the client its copy
    before = not_modified(served)
    assert client.production(AGENT) == config
    assert not_modified(served) == before + 1
    # a runtime that restarts sends the ETag of its copy on disk
    assert Client(served.url, cache_dir=cache).production(AGENT) == config
    assert not_modified(served) == before + 2
    with pytest.raises(ClientError) as never:
        client.production("sales-assistant")
    assert (never.value.status, never.value.code) == (404, "not_found")
    assert "never been published" in never.value.message
    with pytest.raises(ValueError):
        client.production("../etc/passwd")
    # the server stops: the copy answers, and says so
    assert served.stop() == 0
    for reader in (client, Client(served.url, cache_dir=cache)):
        offline = reader.production(AGENT)
        assert offline == config and offline.tag == config.tag
        assert offline.offline and offline.problem and "cannot reach" in offline.problem
    with pytest.raises(Unavailable):
        Client(served.url).production(AGENT)  # no copy: nothing to answer with


def test_a_retired_agent_leaves_no_local_copy(served: Server, tmp_path: Path) -> None:
    client = Client(served.url, cache_dir=tmp_path / "cache")
    assert client.production(AGENT).version == 1
    copy = tmp_path / "cache" / f"{AGENT}.json"
    assert copy.is_file()
    cli("retire", AGENT, "-m", "gone", repo=served.repo)
    deadline = time.monotonic() + WAIT
    while True:
        try:
            client.production(AGENT)
        except ClientError as exc:
            assert (exc.status, exc.code) == (404, "not_found")
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not copy.exists()
    assert served.stop() == 0
    with pytest.raises(Unavailable):
        client.production(AGENT)


def test_production_needs_the_token(repo: Path, tmp_path: Path, run: Any) -> None:
    made = run("token", "create", "runtime", "--email", "runtime@example.com", repo=repo)
    assert made.code == 0, made.err
    running = Server(repo, server_env(tmp_path / "home"), "--auth", "tokens")
    try:
        with pytest.raises(ClientError) as refused:
            Client(running.url).production(AGENT)
        assert (refused.value.status, refused.value.code) == (401, "unauthenticated")
        reader = Client(running.url, token=made.out.strip())
        assert reader.production(AGENT)["description"] == "first"
        assert reader.production(AGENT)["description"] == "first"  # a 304, with the token
    finally:
        assert running.stop() == 0, running.stderr


def _collect(items: Iterator[Any], into: queue.Queue[Any]) -> threading.Thread:
    def consume() -> None:
        try:
            for item in items:
                into.put(item)
        except Exception as exc:  # the test sees it
            into.put(exc)
        into.put(None)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    return thread


def test_events_across_a_restart_replay_what_was_missed(repo: Path, tmp_path: Path) -> None:
    env = server_env(tmp_path / "home")
    running = Server(repo, env)
    client = Client(running.url)
    got: queue.Queue[Event | None] = queue.Queue()
    # from v1 on: whatever this connection misses is replayed, so no sleep is needed
    thread = _collect(client.events(last_event_id=f"{AGENT}/v1"), got)
    try:
        publish(repo, "second")
        event = got.get(timeout=WAIT)
        assert event is not None and (event.id, event.event) == (f"{AGENT}/v2", "publish")
        assert event.data["tag"] == f"{AGENT}/v2" and event.data["reason"] == "second"
        assert running.stop() == 0, running.stderr
        publish(repo, "third")  # while the server is stopped
        running = Server(repo, env, "--port", str(running.port))
        event = got.get(timeout=WAIT)  # the client came back with Last-Event-ID: v2
        assert event is not None and event.id == f"{AGENT}/v3"
        publish(repo, "fourth")
        event = got.get(timeout=WAIT)
        assert event is not None and event.id == f"{AGENT}/v4"
        assert got.empty()  # each once
    finally:
        client.close()
        thread.join(timeout=WAIT)
        assert not thread.is_alive()
        running.stop()


def test_follow_yields_production_now_and_after_each_publish(served: Server) -> None:
    client = Client(served.url)
    got: queue.Queue[Production | None] = queue.Queue()
    thread = _collect(client.follow(AGENT), got)
    never: queue.Queue[Production | None] = queue.Queue()
    waiting = _collect(client.follow("sales-assistant"), never)  # yields at its first publish
    try:
        now = got.get(timeout=WAIT)
        assert now is not None and now["description"] == "first" and now.version == 1
        publish(served.repo, "followed")
        after = got.get(timeout=WAIT)
        assert after is not None and after["description"] == "followed" and after.version == 2
        cli("publish", "sales-assistant", "-m", "first", repo=served.repo)
        first = never.get(timeout=WAIT)
        assert first is not None and first.tag == "sales-assistant/v1"
        assert got.empty()  # another agent's publish is not this one's change
    finally:
        client.close()
        for t in (thread, waiting):
            t.join(timeout=WAIT)
            assert not t.is_alive()


def test_the_client_needs_only_the_standard_library() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import agentstage.client"],
                          capture_output=True, text=True, timeout=60, check=True)
    imported = {line.rpartition("|")[2].strip().split(".")[0]
                for line in done.stderr.splitlines()[1:] if "|" in line}
    outside = {m for m in imported if m not in sys.stdlib_module_names} - {
        "agentstage", "sitecustomize", "_distutils_hack", "encodings"}
    assert not outside
    assert not any(line.strip().endswith(("agentstage.store", "agentstage.server"))
                   for line in done.stderr.splitlines())
