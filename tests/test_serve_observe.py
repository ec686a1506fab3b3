"""What the server says about itself: one access-log line per request, /metrics."""

from __future__ import annotations

import re
from pathlib import Path

from test_serve import AUTHOR_EMAIL, AUTHOR_NAME, Server, sample_repo, server_env


def test_access_log_and_metrics(tmp_path: Path) -> None:
    running = Server(sample_repo(tmp_path), server_env(tmp_path / "home"))
    try:
        with running.client() as http:
            assert http.get("/api/v2/agents/hr-helpdesk").status_code == 200
            assert http.get("/api/v2/agents/ghost").status_code == 404
            assert http.patch("/api/v2/agents/hr-helpdesk/fields",
                              json={"set": {"access": "team"}}).status_code == 200
            assert http.post("/api/v2/agents/hr-helpdesk/publish",
                             json={"reason": "go"}).status_code == 200
            assert http.get("/api/v2/agents", headers={"host": "evil.example"}).status_code \
                == 400
            assert http.get("/api/v2/agents/x%0A/y").status_code in (400, 404)
            metrics = http.get("/metrics")
    finally:
        assert running.stop() == 0
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    route = 'route="/api/v2/agents/{agent_id}"'
    assert f'agentstage_http_requests_total{{method="GET",{route},status="200"}} 1' in text
    assert f'agentstage_http_requests_total{{method="GET",{route},status="404"}} 1' in text
    assert 'agentstage_http_requests_total{method="GET",route="(unmatched)",status="400"} 1' \
        in text
    assert 'agentstage_publishes_total{agent="hr-helpdesk"} 1' in text
    assert re.search(r'^agentstage_http_request_duration_seconds_bucket\{le="\+Inf"\} [1-9]',
                     text, re.M)
    assert re.search(r"^agentstage_http_request_duration_seconds_count [1-9]", text, re.M)
    lines = [ln for ln in running.stderr.splitlines() if " method=" in ln]
    assert len(lines) == 7  # one per request, /metrics itself included
    who = f'identity="{AUTHOR_NAME} <{AUTHOR_EMAIL}>"'
    assert all(who in ln for ln in lines)
    assert re.search(r"method=PATCH path=/api/v2/agents/hr-helpdesk/fields status=200 "
                     r"ms=[0-9.]+$", lines[2])
    assert "status=404" in lines[1]
    assert any("path=/api/v2/agents/x%0A/y " in ln for ln in lines)
