"""Webhooks against a real HTTP receiver on a loopback port: the signature, retries with
backoff, timeouts, the delivery log, a real `git push` into a hooked bare repository, and
a real `agentstage serve` (README: Trust)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentstage import webhooks
from agentstage.policy import Webhook
from agentstage.store import Store
from conftest import git, hooked_server
from test_serve import Server, server_env

SECRET = "It's a Secret to Everybody"
ENTRY = {"agent": "support-bot", "version": 3, "tag": "support-bot/v3", "reason": "café ☕",
         "published_at": "2026-01-02T03:04:05+00:00"}


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each request with the next of *plan* (an
    HTTP status, or "hang": no answer until the test ends), then 200."""

    def __init__(self, *plan: int | str) -> None:
        self.plan = list(plan)
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.release = threading.Event()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.requests.append((dict(self.headers), body, time.monotonic()))
                    answer = receiver.plan.pop(0) if receiver.plan else 200
                    receiver.arrived.notify_all()
                if answer == "hang":
                    receiver.release.wait(60)
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 20) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), \
                f"{len(self.requests)} requests arrived, not {count}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Makes receivers (Receiver's arguments), each closed after the test."""
    made: list[Receiver] = []

    def make(*plan: int | str) -> Receiver:
        made.append(Receiver(*plan))
        return made[-1]

    yield make
    for r in made:
        r.close()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What the README tells a receiver to do."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def policy_file(tmp: Path, url: str, timeout: float = 5, **extra: str) -> Path:
    path = tmp / "policy.yaml"
    path.write_text("admins: ['*']\neditors: ['*']\npublishers: {'*': ['*']}\n"
                    f"webhooks:\n  - url: {url}\n    events: [publish]\n"
                    f"    secret_env: WEBHOOK_SECRET\n    timeout: {timeout}\n"
                    + "".join(f"    {k}: {v}\n" for k, v in extra.items()))
    return path


# -- delivering: the signature, retries, timeouts, the log --------------------------------


def test_the_signature_verifies_with_the_secret(repo: Path, receiver: Any, run: Any) -> None:
    r = receiver()
    git_dir = Store.open(repo).git_dir
    hook = Webhook(url=r.url, events=["publish"], secret_env="WEBHOOK_SECRET")
    assert webhooks.deliver(git_dir, hook, ENTRY, "test", env={"WEBHOOK_SECRET": SECRET})
    [(headers, body, _at)] = r.requests
    assert json.loads(body) == ENTRY  # the body is the entry, and the bytes signed
    assert verify(SECRET, body, headers["X-Agentstage-Signature-256"])
    assert not verify("another secret", body, headers["X-Agentstage-Signature-256"])
    assert not verify(SECRET, body + b" ", headers["X-Agentstage-Signature-256"])
    assert headers["X-Agentstage-Event"] == "publish"
    assert headers["Content-Type"] == "application/json"
    delivery = headers["X-Agentstage-Delivery"]
    assert len(delivery) == 36
    [record] = run("webhooks", "log", "--format", "json", repo=repo).json()
    assert {k: record[k] for k in ("tag", "url", "attempt", "outcome", "status", "delivery")} \
        == {"tag": "support-bot/v3", "url": r.url, "attempt": 1, "outcome": "delivered",
            "status": 200, "delivery": delivery}


def test_fails_twice_then_succeeds_in_three_attempts_with_backoff(
        repo: Path, receiver: Any, run: Any) -> None:
    r = receiver(500, 503)
    git_dir = Store.open(repo).git_dir
    hook = Webhook(url=r.url, events=["publish"], secret_env="WEBHOOK_SECRET")
    assert webhooks.deliver(git_dir, hook, ENTRY, "test", env={"WEBHOOK_SECRET": SECRET})
    assert len(r.requests) == 3
    ids = {h["X-Agentstage-Delivery"] for h, _b, _t in r.requests}
    assert len(ids) == 1  # one delivery, attempted three times, the same bytes each time
    assert len({b for _h, b, _t in r.requests}) == 1
    gaps = [b[2] - a[2] for a, b in zip(r.requests, r.requests[1:], strict=False)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0  # exponential backoff
    records = run("webhooks", "log", "--format", "json", repo=repo).json()
    assert [(x["attempt"], x["outcome"], x["status"]) for x in records] == \
        [(3, "delivered", 200), (2, "retrying", 503), (1, "retrying", 500)]
    text = run("webhooks", "log", "--limit", "2", repo=repo)
    assert text.code == 0
    lines = text.out.splitlines()
    assert len(lines) == 2
    assert "support-bot/v3" in lines[0] and "attempt 3: delivered (HTTP 200" in lines[0]
    assert "attempt 2: retrying (HTTP 503" in lines[1]


def test_a_client_error_is_not_retried_and_a_dead_port_is(repo: Path, receiver: Any) -> None:
    r = receiver(404)
    git_dir = Store.open(repo).git_dir
    env = {"WEBHOOK_SECRET": SECRET}
    assert not webhooks.deliver(git_dir, Webhook(url=r.url, events=["publish"],
                                                 secret_env="WEBHOOK_SECRET"), ENTRY, "t", env)
    assert len(r.requests) == 1
    dead = r.url.replace(str(r.server.server_address[1]), "9")  # discard: nobody listens
    slept: list[float] = []
    assert not webhooks.deliver(git_dir, Webhook(url=dead, events=["publish"],
                                                 secret_env="WEBHOOK_SECRET"),
                                ENTRY, "t", env, sleep=slept.append)
    assert slept == [0.5, 1.0]
    records = webhooks.read_log(git_dir)
    assert [(x["attempt"], x["outcome"]) for x in records] == \
        [(3, "failed"), (2, "retrying"), (1, "retrying"), (1, "failed")]
    assert records[0]["status"] is None and records[0]["error"]
    assert records[-1]["error"] == "HTTP 404"


def test_a_hanging_receiver_times_out_within_the_bound(repo: Path, receiver: Any) -> None:
    r = receiver("hang", "hang", "hang")
    git_dir = Store.open(repo).git_dir
    hook = Webhook(url=r.url, events=["publish"], secret_env="WEBHOOK_SECRET", timeout=0.5)
    started = time.monotonic()
    assert not webhooks.deliver(git_dir, hook, ENTRY, "t", {"WEBHOOK_SECRET": SECRET})
    took = time.monotonic() - started
    assert 3 * 0.5 + 1.5 <= took < 3 * 0.5 + 1.5 + 5  # three timeouts and the backoff
    assert [x["error"] for x in webhooks.read_log(git_dir)] == ["timed out after 0.5 s"] * 3


def test_a_missing_secret_is_a_logged_failure_not_a_crash(repo: Path, receiver: Any,
                                                          run: Any) -> None:
    r = receiver()
    git_dir = Store.open(repo).git_dir
    hook = Webhook(url=r.url, events=["publish"], secret_env="NOT_SET_HERE")
    assert not webhooks.deliver(git_dir, hook, ENTRY, "t", env={})
    assert r.requests == []
    out = run("webhooks", "log", repo=repo).out
    assert "attempt 1: failed (the environment variable NOT_SET_HERE" in out


def test_the_log_rotates(repo: Path, monkeypatch: pytest.MonkeyPatch, run: Any) -> None:
    git_dir = Store.open(repo).git_dir
    monkeypatch.setattr(webhooks, "LOG_LIMIT", 2000)
    for n in range(80):
        webhooks.append(git_dir, {"tag": f"a/v{n + 1}", "outcome": "claimed", "by": "t"})
    assert (git_dir / "agentstage-webhooks.log").stat().st_size <= 2000
    assert (git_dir / "agentstage-webhooks.log.1").stat().st_size <= 2000
    newest = webhooks.read_log(git_dir, 3)
    assert [x["tag"] for x in newest] == ["a/v80", "a/v79", "a/v78"]
    assert len(webhooks.read_log(git_dir)) < 80  # the oldest went with the older .1
    (git_dir / "agentstage-webhooks.log").write_text("error: not JSON\n")
    assert run("webhooks", "log", repo=repo).out.splitlines()[0] == "error: not JSON"


# -- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "where", "message"), [
    ("{url: 'ftp://h/x', events: [publish], secret_env: S}", "webhooks.0.url",
     "is not an http or https URL"),
    ("{url: 'https://', events: [publish], secret_env: S}", "webhooks.0.url",
     "is not an http or https URL"),
    ("{url: 'https://h/x', events: [], secret_env: S}", "webhooks.0.events",
     "at least 1 item"),
    ("{url: 'https://h/x', events: [push], secret_env: S}", "webhooks.0.events.0",
     "'publish'"),
    ("{url: 'https://h/x', events: [publish, publish], secret_env: S}", "webhooks.0.events",
     "listed twice"),
    ("{url: 'https://h/x', events: [publish], secret_env: 's3cr3t!'}",
     "webhooks.0.secret_env", "is not an environment variable name"),
    ("{url: 'https://h/x', events: [publish]}", "webhooks.0.secret_env", "Field required"),
    ("{url: 'https://h/x', events: [publish], secret_env: S, secret: x}", "webhooks.0.secret",
     "unknown field (expected url, events, secret_env, timeout)"),
    ("{url: 'https://h/x', events: [publish], secret_env: S, timeout: 0}",
     "webhooks.0.timeout", "greater than 0"),
])
def test_bad_webhook_entries_are_refused_where_they_are(repo: Path, tmp_path: Path, run: Any,
                                                        entry: str, where: str,
                                                        message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"admins: [alice]\nwebhooks:\n  - url: https://fine/x\n"
                    f"    events: [publish]\n    secret_env: OK\n  - {entry}\n")
    result = run("policy", "set", str(path), repo=repo)
    assert result.code == 4
    where = where.replace("webhooks.0", "webhooks.1")
    assert f"policy.yaml:6: {where}: " in result.err
    assert message in result.err
    assert git(repo, "for-each-ref", "refs/meta") == ""


# -- the server hook: a real git push -------------------------------------------------------


@pytest.fixture
def pushed(tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(a clone to publish from, the hooked bare server it pushes to); the pusher alice."""
    _source, server = hooked_server(tmp_path, run)
    git(tmp_path, "clone", "-q", str(server), str(tmp_path / "clone"))
    monkeypatch.setenv("REMOTE_USER", "alice")
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    return tmp_path / "clone", server


def publish_and_push(run: Any, clone: Path, agent: str) -> float:
    """Publish *agent* in *clone* and push it (the hooks run); how long the push took."""
    assert run("set", agent, f"description=at {time.time()}", "-m", "edit", repo=clone).code == 0
    assert run("publish", agent, "-m", "ship it", "--no-push", repo=clone).code == 0
    tag = git(clone, "tag", "--points-at", f"production/{agent}")
    started = time.monotonic()
    subprocess.run(["git", "-C", str(clone), "push", "-q", "--atomic", "origin", "staging",
                    f"production/{agent}", f"refs/tags/{tag}"], check=True,
                   capture_output=True)
    return time.monotonic() - started


def wait_log(server: Path, predicate: Any, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        records = webhooks.read_log(server)
        if predicate(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_a_pushed_publish_is_delivered_by_the_server_hook(
        pushed: tuple[Path, Path], tmp_path: Path, receiver: Any, run: Any) -> None:
    clone, server = pushed
    r = receiver()
    assert run("policy", "set", str(policy_file(tmp_path, r.url)), repo=server).code == 0
    git(clone, "fetch", "-q", "origin", "refs/meta/agentstage:refs/meta/agentstage")
    publish_and_push(run, clone, "billing-support")
    r.wait(1)
    headers, body, _at = r.requests[0]
    entry = json.loads(body)
    assert entry["tag"] == "billing-support/v1" and entry["reason"] == "ship it"
    assert entry["pushed_by"] == "alice"  # noted before the delivery started
    assert verify(SECRET, body, headers["X-Agentstage-Signature-256"])
    records = wait_log(server, lambda rs: any(x["outcome"] == "delivered" for x in rs))
    assert [(x["outcome"], x["by"]) for x in reversed(records)] == \
        [("claimed", "post-receive"), ("delivered", "post-receive")]
    log = run("webhooks", "log", repo=server)
    assert "billing-support/v1" in log.out and "attempt 1: delivered (HTTP 200" in log.out
    # by hand: --once skips what was delivered; without it, a redelivery with a new id
    once = run("webhooks", "deliver", "--once", "billing-support/v1", repo=server)
    assert (once.code, once.out.strip()) == \
        (0, f"billing-support/v1 -> {r.url}: skipped (already delivered)")
    again = run("webhooks", "deliver", "billing-support/v1", repo=server)
    assert (again.code, again.out.strip()) == (0, f"billing-support/v1 -> {r.url}: delivered")
    assert len(r.requests) == 2
    assert r.requests[1][1] == body
    assert r.requests[1][0]["X-Agentstage-Delivery"] != headers["X-Agentstage-Delivery"]
    missing = run("webhooks", "deliver", "billing-support/v9", repo=server)
    assert missing.code == 6 and "error: no publish billing-support/v9" in missing.err
    # in the background (--once) an unknown tag is logged, and the others still go
    both = run("webhooks", "deliver", "--once", "nope/v1", "billing-support/v1", repo=server)
    assert both.code == 5
    assert both.out.splitlines() == ["nope/v1: no agent 'nope' on staging or in production",
                                     f"billing-support/v1 -> {r.url}: skipped (already delivered)"]
    assert webhooks.read_log(server, 1)[0]["error"] == "no agent 'nope' on staging or in production"


def test_a_hanging_receiver_does_not_delay_the_push(
        pushed: tuple[Path, Path], tmp_path: Path, receiver: Any, run: Any) -> None:
    clone, server = pushed
    r = receiver("hang", "hang", "hang")
    assert run("policy", "set", str(policy_file(tmp_path, r.url, timeout=8)),
               repo=server).code == 0
    git(clone, "fetch", "-q", "origin", "refs/meta/agentstage:refs/meta/agentstage")
    took = publish_and_push(run, clone, "billing-support")
    assert took < 8  # the delivery's first attempt alone would take 8 s
    r.wait(1)  # it did start, in the background


def test_without_webhooks_a_push_starts_nothing(pushed: tuple[Path, Path], run: Any) -> None:
    clone, server = pushed
    publish_and_push(run, clone, "billing-support")
    time.sleep(0.3)
    assert not (server / "agentstage-webhooks.log").exists()


# -- serve ----------------------------------------------------------------------------------


def test_serve_delivers_each_publish_once_even_beside_the_hook(
        tmp_path: Path, receiver: Any, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve on the hooked bare repository: an API publish is delivered by serve, a pushed
    one by whichever claims it first, each once; a hanging receiver delays neither."""
    r = receiver("hang")
    _source, server = hooked_server(tmp_path, run)
    assert run("policy", "set", str(policy_file(tmp_path, r.url, timeout=3)),
               repo=server).code == 0
    env = server_env(tmp_path / "home", WEBHOOK_SECRET=SECRET,
                     PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    running = Server(server, env)
    try:
        with running.client() as http:
            started = time.monotonic()
            answer = http.post("/api/v2/agents/hr-helpdesk/publish", json={"reason": "api"})
            assert answer.status_code == 200, answer.text
            assert time.monotonic() - started < 3  # the receiver hangs for 3 s
        r.wait(2, timeout=15)  # the first attempt timed out; the second is taken
        records = wait_log(server, lambda rs: any(x["outcome"] == "delivered" for x in rs))
        assert [(x["attempt"], x["outcome"], x["by"]) for x in reversed(records)] == \
            [(0, "claimed", "serve"), (1, "retrying", "serve"), (2, "delivered", "serve")]
        assert records[1]["error"] == "timed out after 3 s"
        headers, body, _at = r.requests[1]
        assert json.loads(body)["tag"] == "hr-helpdesk/v1"
        assert verify(SECRET, body, headers["X-Agentstage-Signature-256"])
        # a push into the served repository: the hook and serve both see it
        git(tmp_path, "clone", "-q", str(server), str(tmp_path / "clone"))
        monkeypatch.setenv("REMOTE_USER", "alice")
        monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
        publish_and_push(run, tmp_path / "clone", "billing-support")
        r.wait(3)
        time.sleep(2)  # serve's watcher has seen the tag by now (SETTLE_SECONDS and a poll)
        tags = [json.loads(b)["tag"] for _h, b, _t in r.requests]
        assert tags == ["hr-helpdesk/v1", "hr-helpdesk/v1", "billing-support/v1"]
        claims = [x for x in webhooks.read_log(server) if x["outcome"] == "claimed"]
        assert sorted(x["tag"] for x in claims) == ["billing-support/v1", "hr-helpdesk/v1"]
    finally:
        assert running.stop() == 0, running.stderr
