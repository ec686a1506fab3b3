"""`agentstage serve` over a bare repository, as on a git server: edits, publish, delivery."""

from __future__ import annotations

from pathlib import Path

from conftest import git
from test_serve import AUTHOR_NAME, Server, server_env


def test_serve_a_bare_repository(bare: Path, tmp_path: Path) -> None:
    running = Server(bare, server_env(tmp_path / "home"))
    try:
        with running.client() as http:
            r = http.patch("/api/v2/agents/billing-support/fields",
                           json={"set": {"model.temperature": 0.3}, "message": "Cooler"})
            assert r.status_code == 200, r.text
            published = http.post("/api/v2/agents/billing-support/publish",
                                  json={"reason": "cooler replies"})
            assert published.status_code == 200, published.text
            live = http.get("/api/v2/agents/billing-support/production").json()
    finally:
        assert running.stop() == 0
    assert live["config"]["model"]["temperature"] == 0.3 and live["version"] == 1
    assert git(bare, "log", "-1", "--format=%an %s", "staging") == f"{AUTHOR_NAME} Cooler"
    assert git(bare, "rev-parse", "production/billing-support") == \
        git(bare, "rev-parse", "staging") == published.json()["commit"]
    assert git(bare, "cat-file", "-t", "billing-support/v1") == "tag"
