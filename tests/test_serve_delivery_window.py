"""A publish writes its tag a moment before it moves production (a crash there leaves the
tag ahead, which the next publish or doctor completes). Delivery answers the tag's own
configuration under the tag's ETag, so a runtime never gets one publish's configuration
labelled with another's tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import git
from test_serve import Server, cli, sample_repo, server_env

AGENT = "billing-support"


def test_the_tag_ahead_of_production_is_served_with_its_own_config(
        tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    assert cli(repo, env, "publish", AGENT, "-m", "first").returncode == 0
    assert cli(repo, env, "set", AGENT, "model.temperature=0.77", "-m", "warmer").returncode == 0
    assert cli(repo, {**env, "AGENTSTAGE_CRASH_AT": "publish:after-tag"},
               "publish", AGENT, "-m", "second").returncode == 137
    assert git(repo, "rev-parse", f"production/{AGENT}") == \
        git(repo, "rev-parse", f"{AGENT}/v1^{{commit}}")  # the crash left the tag ahead
    server = Server(repo, env)
    try:
        with server.client() as http:
            for _ in range(2):  # the route's answer, then the cached one
                r = http.get(f"/api/v2/agents/{AGENT}/production")
                assert r.status_code == 200, r.text
                body = r.json()
                assert (body["tag"], r.headers.get("etag")) == (f"{AGENT}/v2", f'"{AGENT}/v2"')
                assert body["config"]["model"]["temperature"] == pytest.approx(0.77)
                assert body["commit"] == git(repo, "rev-parse", f"{AGENT}/v2^{{commit}}")
    finally:
        assert server.stop() == 0, server.stderr
