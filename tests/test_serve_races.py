"""Races between a server's edit and another writer of staging, made deterministic: the
server holds each edit between planning it and committing it (AGENTSTAGE_PAUSE_AT) while
the test moves staging with the CLI, then lets it go on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import git
from test_serve import Server, last_commit, sample_repo, server_env


class Paused:
    def __init__(self, server: Server, release: Path) -> None:
        self.server = server
        self.release = release
        self.reached = Path(f"{release}.reached")

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request that the server holds before its commit; while it is held, run
        `between` (set as an attribute by the caller); then release it."""
        self.release.unlink(missing_ok=True)
        self.reached.unlink(missing_ok=True)
        result: list[httpx.Response] = []

        def go() -> None:
            with self.server.client() as client:
                result.append(client.request(method, path, **kwargs))

        thread = threading.Thread(target=go)
        thread.start()
        deadline = time.monotonic() + 30
        while not self.reached.exists():  # the server announces that it holds the edit
            assert time.monotonic() < deadline, "the server never reached the pause point"
            time.sleep(0.01)
        self.between()
        self.release.touch()
        thread.join(timeout=60)
        assert result, "the request did not finish"
        return result[0]

    def between(self) -> None:  # pragma: no cover - replaced by each test
        pass


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paused]:
    base = tmp_path_factory.mktemp("serve-races")
    release = base / "release"
    env = server_env(base / "home", AGENTSTAGE_PAUSE_AT="api:edit-planned",
                     AGENTSTAGE_PAUSE_FILE=str(release))
    running = Server(sample_repo(base), env)
    yield Paused(running, release)
    release.touch()
    assert running.stop() == 0, running.stderr


def cli_set(run: Any, repo: Path, agent: str, *assignments: str) -> str:
    result = run("set", agent, *assignments, "-m", "by the CLI meanwhile", repo=repo)
    assert result.code == 0, result.err
    return git(repo, "rev-parse", "staging")


def staged(repo: Path, agent: str, field: str) -> str:
    text = git(repo, "show", f"staging:agents/{agent}/agent.yaml")
    return next(line for line in text.splitlines() if line.startswith(f"{field}:"))


def test_a_lost_race_on_another_agent_is_applied_again(paused: Paused, run: Any) -> None:
    repo = paused.server.repo
    moved: list[str] = []
    paused.between = lambda: moved.append(cli_set(run, repo, "hr-helpdesk", "access=team"))
    r = paused.send("PATCH", "/api/v2/agents/billing-support/fields",
                    json={"set": {"description": "from the API"}})
    assert r.status_code == 200, r.text
    assert last_commit(repo)["parents"] == moved[0]  # applied on top of the CLI's commit
    assert r.json()["commit"] == git(repo, "rev-parse", "staging")
    assert staged(repo, "hr-helpdesk", "access") == "access: team"
    assert r.json()["config"]["description"] == "from the API"


def test_a_lost_race_on_another_field_is_applied_again(paused: Paused, run: Any) -> None:
    repo = paused.server.repo
    paused.between = lambda: cli_set(run, repo, "sales-assistant", "access=public")
    r = paused.send("PUT", "/api/v2/agents/sales-assistant/access", json={"access": "team"})
    assert r.status_code == 409, r.text  # the same field: a true collision
    assert r.json()["error"]["code"] == "conflict" and "access" in r.json()["error"]["message"]
    assert staged(repo, "sales-assistant", "access") == "access: public"
    paused.between = lambda: cli_set(run, repo, "sales-assistant", "tags=[moved]")
    r = paused.send("PATCH", "/api/v2/agents/sales-assistant/fields",
                    json={"set": {"model.temperature": 0.9}})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["tags"] == ["moved"]
    assert r.json()["config"]["model"]["temperature"] == 0.9


def test_a_race_with_if_match_is_412_and_writes_nothing(paused: Paused, run: Any) -> None:
    repo = paused.server.repo
    with paused.server.client() as client:
        tag = client.get("/api/v2/agents/hr-helpdesk").headers["etag"]
    moved: list[str] = []
    paused.between = lambda: moved.append(cli_set(run, repo, "hr-helpdesk", "tags=[other]"))
    r = paused.send("PUT", "/api/v2/agents/hr-helpdesk/access", json={"access": "public"},
                    headers={"if-match": tag})
    assert r.status_code == 412, r.text
    assert r.json()["error"]["code"] == "precondition_failed"
    assert git(repo, "rev-parse", "staging") == moved[0]


def test_sigterm_lets_a_write_in_flight_finish(tmp_path: Path) -> None:
    """SIGTERM while an edit is held before its commit: the server stops listening at once,
    the edit still commits and is answered, then the process exits 0."""
    import signal
    import socket

    release = tmp_path / "release"
    env = server_env(tmp_path / "home", AGENTSTAGE_PAUSE_AT="api:edit-planned",
                     AGENTSTAGE_PAUSE_FILE=str(release))
    running = Server(sample_repo(tmp_path), env)
    paused = Paused(running, release)

    def stop_listening() -> None:
        running.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:  # wait until the listening socket is closed: shutdown has begun
            try:
                socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
            except OSError:
                return
            assert time.monotonic() < deadline, "the server kept listening after SIGTERM"
            time.sleep(0.01)

    paused.between = stop_listening
    try:
        r = paused.send("PATCH", "/api/v2/agents/hr-helpdesk/fields",
                        json={"set": {"description": "finished during shutdown"}})
    finally:
        release.touch()
        code = running.stop()
    assert r.status_code == 200, r.text
    assert r.json()["commit"] == git(running.repo, "rev-parse", "staging")
    assert code == 0, running.stderr
