"""Fuzzing `agentstage serve` from its own OpenAPI document (schemathesis), against a real
server process: for every operation, requests that fit the document and requests that do
not. No answer is a 500; every answer is one the document declares (its status, content
type, headers and body schema); a request the document says is invalid is refused (4xx);
and the repository is sound afterwards.

Each operation runs as a Hypothesis test of its own, bounded and derandomized so a run is
reproducible and CI stays quick. The ids in the paths are sometimes generated and
sometimes those of a real agent, tool, action, corpus and publish, so writes really
happen and their answers are checked too. `GET /api/v2/events` is left out: it is a
stream that does not end (tests/test_serve_events.py drives it).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import git
from test_serve import Server, sample_repo, server_env

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
EXAMPLES = 100  # per operation: the whole run is about a minute
STREAMS = {"/api/v2/events"}
AGENT = "fuzz-bot"
REAL = {"agent_id": AGENT, "tool_id": "web-search", "action_id": "lookup",
        "instruction_id": "persona", "corpus_id": "faq", "change_track_id": "1"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("fuzz")
    running = Server(sample_repo(base), server_env(base / "home"))
    with running.client() as http:
        assert http.post("/api/v2/agents", json={"id": AGENT, "name": "Fuzz"}).status_code \
            == 201
        http.patch(f"/api/v2/agents/{AGENT}/fields", json={"set": {
            "tools[web-search]": {"enabled": True, "actions": [{"id": "lookup"}]},
            "knowledge[faq]": {"type": "corpus"}}}).raise_for_status()
        http.post(f"/api/v2/agents/{AGENT}/publish", json={"reason": "v1"}).raise_for_status()
    yield running
    running.stop()


def strategy(operation: Any) -> Any:
    """Valid and invalid requests, with generated ids and with the real ones."""
    names = {p.name for p in operation.path_parameters}
    real = {k: v for k, v in REAL.items() if k in names}
    options = []
    for mode in schemathesis.GenerationMode:
        options.append(operation.as_strategy(generation_mode=mode))
        if real:
            options.append(operation.as_strategy(generation_mode=mode, path_parameters=real))
    return st.one_of(options)


def fuzz(served: Server, operation: Any, seen: Counter[int]) -> None:
    @given(case=strategy(operation))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    def check(case: Any) -> None:
        response = case.call_and_validate(base_url=served.url, checks=CHECKS, timeout=30)
        seen[response.status_code] += 1

    check()


def test_every_operation_answers_as_documented(served: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()
                  if r.ok().path not in STREAMS]
    assert len(operations) > 30, [op.label for op in operations]
    failures: dict[str, str] = {}
    seen: dict[str, Counter[int]] = {}
    started = time.monotonic()
    for operation in operations:
        seen[operation.label] = Counter()
        try:
            fuzz(served, operation, seen[operation.label])
        except (Exception, FailureGroup) as exc:  # every operation's failure, reported at once
            failures[operation.label] = f"{type(exc).__name__}: {exc}"
    took = time.monotonic() - started
    assert not failures, "\n\n".join(f"== {k}\n{v}" for k, v in failures.items())
    # the fuzz got past the edges: most operations, writes among them, did their work
    done = {label for label, statuses in seen.items() if any(200 <= s < 300 for s in statuses)}
    assert len(done) >= len(operations) * 2 // 3, {k: dict(v) for k, v in seen.items()}
    assert {"PATCH /api/v2/agents/{agent_id}/fields", "POST /api/v2/agents/{agent_id}/publish",
            "PUT /api/v2/agents/{agent_id}/restore"} <= done, done
    print(f"fuzzed {sum(map(sum, (c.values() for c in seen.values())))} requests over "
          f"{len(operations)} operations in {took:.0f} s")


def test_the_server_and_repository_are_sound_after_fuzzing(served: Server) -> None:
    with served.client() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get(f"/api/v2/agents/{AGENT}").status_code in (200, 404)
    git(served.repo, "fsck", "--strict")
    assert served.stop() == 0
    assert "Traceback" not in served.stderr, served.stderr[-5000:]
    assert " status=500 " not in served.stderr
