"""16 clients at once through one server: edits of different agents and fields, and
publishes. Every acknowledged edit is on staging; versions are contiguous; tags and
production agree; git fsck is clean."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from conftest import git
from test_serve import Server, sample_repo, server_env

AGENTS = ("billing-support", "hr-helpdesk", "sales-assistant")
CLIENTS = 16
ROUNDS = 3


def test_sixteen_clients_edit_and_publish_at_once(tmp_path: Path) -> None:
    running = Server(sample_repo(tmp_path), server_env(tmp_path / "home"))
    start = threading.Barrier(CLIENTS, timeout=60)
    edits: list[tuple[str, str, int]] = []  # (agent, key, value) of each 200 edit
    outcomes: list[tuple[str, int, Any]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        agent = AGENTS[n % len(AGENTS)]
        with running.client() as http:
            start.wait()
            for r in range(ROUNDS):
                if (n + r) % 4 == 0:
                    res = http.post(f"/api/v2/agents/{agent}/publish",
                                    json={"reason": f"client {n} round {r}"})
                    with lock:
                        outcomes.append(("publish", res.status_code, res.json()))
                else:
                    key = f"c{n}r{r}"
                    res = http.patch(f"/api/v2/agents/{agent}/fields",
                                     json={"set": {f"model.parameters.{key}": n * 100 + r}})
                    with lock:
                        outcomes.append(("edit", res.status_code, res.json()))
                        if res.status_code == 200:
                            edits.append((agent, key, n * 100 + r))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        assert running.stop() == 0, running.stderr
    repo = running.repo
    for kind, status, body in outcomes:
        if kind == "edit":
            assert status == 200, body
        else:
            assert status in (200, 409), body
            if status == 409:
                assert body["error"]["code"] == "nothing_to_publish"
    assert len(edits) == sum(1 for n in range(CLIENTS) for r in range(ROUNDS) if (n + r) % 4)
    for agent in AGENTS:
        text = git(repo, "show", f"staging:agents/{agent}/agent.yaml")
        for owner, key, value in edits:
            if owner == agent:
                assert f"{key}: {value}" in text
        tags = git(repo, "tag", "--list", f"{agent}/v*").split()
        versions = sorted(int(t.rpartition("/v")[2]) for t in tags)
        assert versions == list(range(1, len(versions) + 1))
        published = [b for k, s, b in outcomes if k == "publish" and s == 200
                     and b["agent"] == agent]
        assert len(published) == len(versions)
        if versions:
            newest = git(repo, "rev-parse", f"{agent}/v{versions[-1]}^{{commit}}")
            assert git(repo, "rev-parse", f"production/{agent}") == newest
            for v in versions[1:]:  # each publish descends from the one before
                git(repo, "merge-base", "--is-ancestor", f"{agent}/v{v - 1}", f"{agent}/v{v}")
            record = json.loads(git(repo, "tag", "-l", "--format=%(contents)",
                                    f"{agent}/v{versions[-1]}").split("\n\n")[-1]
                                .partition("\n")[2])
            assert record["version"] == versions[-1]
    git(repo, "fsck", "--strict", "--no-progress")
