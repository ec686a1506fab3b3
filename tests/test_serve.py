"""`agentstage serve` as a real process on a free loopback port: every endpoint of DESIGN.md
section 8 (phase 1: `--auth none`), its error statuses, and the git state after each write.

One server per module: each test works on agents of its own (made through the API), so
the tests do not depend on each other's order.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import commit_all, git, sample_repo

AUTHOR_NAME, AUTHOR_EMAIL = "Serve Author", "serve@example.com"
JSON = {"content-type": "application/json"}


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The sandbox of conftest for a process that outlives one test."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "AGENTSTAGE_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1",
               AGENTSTAGE_AUTHOR=f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>", NO_COLOR="1",
               GIT_AUTHOR_NAME="Test Author", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="Test Author", GIT_COMMITTER_EMAIL="test@example.com")
    env.update(extra)
    return env


def cli(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a process in *env* (a server's, of server_env)."""
    return subprocess.run([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                          capture_output=True, text=True, env=env, timeout=60)


class Server:
    def __init__(self, repo: Path, env: dict[str, str], *args: str) -> None:
        self.repo = repo
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentstage", "-C", str(repo), "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise AssertionError(f"no URL printed: {line!r}; stderr: {self.stderr}")
        self.url = line
        self.port = int(line.rpartition(":")[2])
        assert self.port > 0
        self.stderr = ""
        # stderr (a line per request) is read as it comes: a server writing to a full pipe
        # would wait forever after a few hundred requests
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if hasattr(self, "reader"):
            self.reader.join(timeout=10)
        self.stderr = "".join(getattr(self, "lines", []))
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("serve")
    running = Server(sample_repo(base), server_env(base / "home"))
    yield running
    assert running.stop() == 0, running.stderr


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


_COUNT = iter(range(10_000))


def new_agent(http: httpx.Client, prefix: str = "agent", **fields: Any) -> str:
    agent = f"{prefix}-{next(_COUNT)}"
    body = {"id": agent, "name": f"Agent {agent}", **fields}
    r = http.post("/api/v2/agents", json=body)
    assert r.status_code == 201, r.text
    return agent


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def staging(repo: Path) -> str:
    return git(repo, "rev-parse", "staging")


def last_commit(repo: Path) -> dict[str, str]:
    fmt = "%an%n%ae%n%s%n%P"
    name, email, subject, parents = git(repo, "log", "-1", f"--format={fmt}", "staging").split(
        "\n")
    return {"name": name, "email": email, "subject": subject, "parents": parents}


def only_staging_moved(repo: Path, before: dict[str, str], agent: str) -> None:
    """Exactly one new commit on staging, by the server's identity, changing only the agent;
    no other ref moved."""
    after = refs(repo)
    assert {k: v for k, v in after.items() if k != "refs/heads/staging"} == \
        {k: v for k, v in before.items() if k != "refs/heads/staging"}
    commit = last_commit(repo)
    assert commit["parents"] == before["refs/heads/staging"]
    assert (commit["name"], commit["email"]) == (AUTHOR_NAME, AUTHOR_EMAIL)
    changed = git(repo, "diff", "--name-only", before["refs/heads/staging"], "staging")
    assert changed and all(p.startswith(f"agents/{agent}/") for p in changed.splitlines())


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in r.text
    return body


# -- the server itself ----------------------------------------------------------------------


def test_healthz_openapi_and_docs(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    spec = http.get("/openapi.json").json()
    for path in ("/api/v2/agents", "/api/v2/agents/{agent_id}/publish",
                 "/api/v2/agents/{agent_id}/production", "/api/v2/production",
                 "/api/v2/agents/{agent_id}/publishes/{change_track_id}/diff"):
        assert path in spec["paths"]
    errors = spec["paths"]["/api/v2/agents/{agent_id}/fields"]["patch"]["responses"]
    for status in ("400", "404", "409", "412", "413", "415", "422", "500"):
        assert errors[status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorOut")
    assert "HTTPValidationError" not in str(spec)  # every error in the shape it really has
    assert "swagger" in http.get("/docs").text.lower()


def test_unknown_endpoint_is_404_in_the_error_shape(http: httpx.Client) -> None:
    error(http.get("/api/v2/nothing-here"), 404, "not_found")
    error(http.delete("/api/v2/agents"), 405, "method_not_allowed")


def test_non_loopback_bind_with_auth_none_is_refused(run: Any, repo: Path) -> None:
    result = run("serve", "--host", "0.0.0.0", "--port", "0", repo=repo)
    assert result.code == 2
    assert "not a loopback address" in result.err


def test_unknown_auth_mode_is_a_usage_error(run: Any, repo: Path) -> None:
    for mode in ("bogus", "header:", "header:X Bad", "tokens:x"):
        result = run("serve", "--auth", mode, "--port", "0", repo=repo)
        assert result.code == 2, mode
        assert "none, tokens, header:NAME" in result.err


def test_a_port_in_use_is_a_usage_error(run: Any, repo: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = run("serve", "--port", str(taken.getsockname()[1]), repo=repo)
    assert result.code == 2
    assert "cannot listen on 127.0.0.1" in result.err


def test_cli_start_up_does_not_import_the_server() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentstage", "--help"],
                          capture_output=True, text=True, timeout=60, check=True)
    imported = {line.rpartition("|")[2].strip().split(".")[0]
                for line in done.stderr.splitlines() if "|" in line}
    assert imported.isdisjoint({"fastapi", "starlette", "uvicorn", "jinja2", "httptools"})
    assert "agentstage" in imported


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    running = Server(sample_repo(tmp_path), server_env(tmp_path / "home"))
    with running.client() as client:
        assert client.get("/healthz").status_code == 200
    assert running.stop() == 0


# -- agents -----------------------------------------------------------------------------------


def test_list_agents(http: httpx.Client) -> None:
    rows = {r["agent"]: r for r in http.get("/api/v2/agents").json()}
    assert rows["hr-helpdesk"]["name"] == "HR Helpdesk"
    assert set(rows["hr-helpdesk"]) >= {"agent", "name", "production", "staging_changed"}


def test_create_agent_is_one_commit_with_the_given_settings(server: Server,
                                                          http: httpx.Client) -> None:
    before = refs(server.repo)
    r = http.post("/api/v2/agents", json={
        "id": "created-bot", "name": "Created Bot", "description": "made over HTTP",
        "model": {"provider": "anthropic", "name": "claude", "temperature": 0.5},
        "tags": ["new"], "message": "A new bot"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["agent"] == "created-bot"
    assert body["commit"] == staging(server.repo)
    assert body["config"]["model"] == {"provider": "anthropic", "name": "claude",
                                       "temperature": 0.5, "max_tokens": None,
                                       "parameters": {}}
    assert body["config"]["description"] == "made over HTTP"
    assert r.headers["etag"]
    only_staging_moved(server.repo, before, "created-bot")
    assert last_commit(server.repo)["subject"] == "A new bot"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"id": "Bad_Id", "name": "X"}, 400, "usage"),
    ({"id": "ok-id"}, 422, "invalid"),
    ({"id": "ok-id", "name": "X", "colour": "red"}, 422, "invalid"),
    ({"id": "ok-id", "name": "X", "model": {"name": "m", "temperature": 9}}, 422, "invalid"),
    ({"id": "hr-helpdesk", "name": "Again"}, 409, "conflict"),
])
def test_create_agent_errors_write_nothing(server: Server, http: httpx.Client,
                                           body: dict[str, Any], status: int,
                                           code: str) -> None:
    before = refs(server.repo)
    found = error(http.post("/api/v2/agents", json=body), status, code)
    assert refs(server.repo) == before
    if status == 422:
        assert found["error"]["problems"][0]["path"]


def test_create_agent_invalid_value_is_located(http: httpx.Client) -> None:
    found = error(http.post("/api/v2/agents", json={
        "id": "hot-bot", "name": "X", "model": {"name": "m", "temperature": 9}}), 422, "invalid")
    problem = found["error"]["problems"][0]
    assert problem["file"] == "agents/hot-bot/agent.yaml"
    assert problem["path"] == "model.temperature"
    assert isinstance(problem["line"], int)


def test_show_each_environment_with_etag(http: httpx.Client) -> None:
    agent = new_agent(http, "show")
    r = http.get(f"/api/v2/agents/{agent}")
    assert r.status_code == 200 and r.json()["name"] == f"Agent {agent}"
    tag = r.headers["etag"]
    assert http.get(f"/api/v2/agents/{agent}", headers={"if-none-match": tag}).status_code == 304
    error(http.get(f"/api/v2/agents/{agent}", params={"env": "production"}), 404, "not_found")
    assert http.post(f"/api/v2/agents/{agent}/publish", json={"reason": "go"}).status_code == 200
    assert http.get(f"/api/v2/agents/{agent}", params={"env": "production"}).json()["name"] \
        == f"Agent {agent}"
    assert http.get(f"/api/v2/agents/{agent}", params={"env": "v1"}).status_code == 200
    error(http.get(f"/api/v2/agents/{agent}", params={"env": "v9"}), 404, "not_found")
    error(http.get(f"/api/v2/agents/{agent}", params={"env": "bogus"}), 400, "usage")
    error(http.get("/api/v2/agents/no-such-agent"), 404, "not_found")
    error(http.get("/api/v2/agents/NOT_AN_ID"), 400, "usage")


def test_etag_changes_with_the_agent_only(http: httpx.Client) -> None:
    one, two = new_agent(http, "etag"), new_agent(http, "etag")
    tag = http.get(f"/api/v2/agents/{one}").headers["etag"]
    http.patch(f"/api/v2/agents/{two}/fields", json={"set": {"description": "other"}})
    assert http.get(f"/api/v2/agents/{one}").headers["etag"] == tag
    r = http.patch(f"/api/v2/agents/{one}/fields", json={"set": {"description": "mine"}})
    assert r.headers["etag"] != tag
    assert http.get(f"/api/v2/agents/{one}").headers["etag"] == r.headers["etag"]


def test_put_settings_replaces_given_fields_and_null_removes(server: Server,
                                                             http: httpx.Client) -> None:
    agent = new_agent(http, "put", description="old", tags=["a"])
    before = refs(server.repo)
    r = http.put(f"/api/v2/agents/{agent}", json={"name": "Renamed", "description": None})
    assert r.status_code == 200, r.text
    config = r.json()["config"]
    assert config["name"] == "Renamed" and config["description"] == "" and config["tags"] == ["a"]
    only_staging_moved(server.repo, before, agent)
    text = git(server.repo, "show", f"staging:agents/{agent}/agent.yaml")
    assert "description" not in text
    before = refs(server.repo)
    found = error(http.put(f"/api/v2/agents/{agent}", json={"model": None}), 422, "invalid")
    assert found["error"]["problems"][0]["path"] == "model"
    error(http.put(f"/api/v2/agents/{agent}", json={"access": "everyone"}), 422, "invalid")
    error(http.put(f"/api/v2/agents/{agent}", json={"nmae": "typo"}), 422, "invalid")
    assert refs(server.repo) == before


def test_patch_fields_set_and_unset(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "fields")
    before = refs(server.repo)
    r = http.patch(f"/api/v2/agents/{agent}/fields", json={
        "set": {"model.temperature": 0.7, "tools[web-search]": {"enabled": True},
                "model.parameters": {"top_p": 0.9}},
        "unset": ["instructions[persona]"], "message": "Tune"})
    assert r.status_code == 200, r.text
    config = r.json()["config"]
    assert config["model"]["temperature"] == 0.7
    assert config["tools"][0]["id"] == "web-search"
    assert config["instructions"] == []
    assert {c["path"] for c in r.json()["changes"]} >= {"model.temperature"}
    only_staging_moved(server.repo, before, agent)
    assert last_commit(server.repo)["subject"] == "Tune"


@pytest.mark.parametrize(("body", "status", "code", "path"), [
    ({"set": {"model.temperature": "hot"}}, 422, "invalid", "model.temperature"),
    ({"set": {"model..temperature": 1}}, 400, "usage", None),
    ({"set": {"tools[0].enabled": True}}, 400, "usage", None),  # ids, never positions
    ({"set": {"tools[search].enabled": "yes"}}, 422, "invalid", "tools[search].enabled"),
    ({"set": {"model.temperature": 1}, "sett": {}}, 422, "invalid", "sett"),
    ({"set": []}, 422, "invalid", "set"),
])
def test_patch_fields_errors_write_nothing(server: Server, http: httpx.Client,
                                          body: dict[str, Any], status: int, code: str,
                                          path: str | None) -> None:
    agent = new_agent(http, "badfields")
    before = refs(server.repo)
    found = error(http.patch(f"/api/v2/agents/{agent}/fields", json=body), status, code)
    if path is not None:
        assert path in {p["path"] for p in found["error"]["problems"]}
    assert refs(server.repo) == before


def test_edit_of_a_missing_agent_is_404(http: httpx.Client) -> None:
    error(http.patch("/api/v2/agents/ghost/fields", json={"set": {"name": "x"}}), 404,
          "not_found")


# -- the seed's staging edits ----------------------------------------------------------------


def test_instructions_add_replace_delete(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "instr")
    base = f"/api/v2/agents/{agent}/instructions"
    before = refs(server.repo)
    r = http.post(base, json={"id": "tone", "text": "Be kind."})
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["config"]["instructions"]] == ["persona", "tone"]
    only_staging_moved(server.repo, before, agent)
    r = http.post(base, json=[{"id": "a", "text": "A"}, {"id": "b", "text": "B"}])
    assert [i["id"] for i in r.json()["config"]["instructions"]] == ["persona", "tone", "a", "b"]
    before = refs(server.repo)
    error(http.post(base, json={"id": "tone", "text": "again"}), 409, "conflict")
    error(http.post(base, json={"id": "x"}), 422, "invalid")
    error(http.post(base, json={"id": "bad id!", "text": "x"}), 400, "usage")
    assert refs(server.repo) == before
    r = http.put(base, json=[{"id": "b", "text": "B"}, {"id": "persona", "text": "P"}])
    assert r.json()["config"]["instructions"] == [{"id": "b", "text": "B"},
                                                   {"id": "persona", "text": "P"}]
    r = http.delete(f"{base}/b")
    assert [i["id"] for i in r.json()["config"]["instructions"]] == ["persona"]
    before = refs(server.repo)
    error(http.delete(f"{base}/b"), 404, "not_found")
    assert refs(server.repo) == before


def test_corpora_connect_update_disconnect(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "corpora")
    base = f"/api/v2/agents/{agent}/corpora"
    r = http.post(base, json=[{"id": "faq", "settings": {"top_k": 3}},
                              {"id": "docs", "description": "Docs"}])
    assert r.status_code == 200, r.text
    knowledge = {k["id"]: k for k in r.json()["config"]["knowledge"]}
    assert knowledge["faq"]["type"] == "corpus" and knowledge["faq"]["settings"] == {"top_k": 3}
    assert knowledge["docs"]["description"] == "Docs"
    before = refs(server.repo)
    r = http.put(f"{base}/faq", json={"settings": {"top_k": 9}})
    assert {k["id"]: k for k in r.json()["config"]["knowledge"]}["faq"]["settings"] == \
        {"top_k": 9}
    only_staging_moved(server.repo, before, agent)
    error(http.post(f"{base}/faq"), 409, "conflict")
    r = http.post(f"{base}/extra", json={"settings": {"top_k": 1}})
    assert "extra" in {k["id"] for k in r.json()["config"]["knowledge"]}
    r = http.request("DELETE", base, json={"ids": ["faq", "docs"]})
    assert r.status_code == 200, r.text
    assert [k["id"] for k in r.json()["config"]["knowledge"]] == ["extra"]
    r = http.delete(f"{base}/extra")
    assert r.json()["config"]["knowledge"] == []
    before = refs(server.repo)
    error(http.delete(f"{base}/extra"), 404, "not_found")
    error(http.put(f"{base}/nope", json={"settings": {}}), 404, "not_found")
    error(http.request("DELETE", base, json={"ids": ["nope"]}), 404, "not_found")
    error(http.post(base, json=[{"id": "x", "settings": {"top_k": "many"}}]), 422, "invalid")
    assert refs(server.repo) == before


def test_sharepoint_folder(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "sp")
    base = f"/api/v2/agents/{agent}/sharepoint/folder"
    error(http.put(base, json={"settings": {"site_url": "https://x.example"}}), 404, "not_found")
    error(http.delete(base), 404, "not_found")
    r = http.post(base, json={"settings": {"site_url": "https://x.example/sites/a"}})
    assert r.status_code == 200, r.text
    (entry,) = r.json()["config"]["knowledge"]
    assert entry["id"] == "sharepoint" and entry["type"] == "sharepoint"
    error(http.post(base, json={"settings": {"site_url": "https://x.example"}}), 409,
          "conflict")
    r = http.put(base, json={"settings": {"site_url": "https://y.example/sites/b"}})
    assert r.json()["config"]["knowledge"][0]["settings"]["site_url"] == \
        "https://y.example/sites/b"
    error(http.put(base, json={"settings": {"site_url": "not a url"}}), 422, "invalid")
    before = refs(server.repo)
    r = http.delete(base)
    assert r.json()["config"]["knowledge"] == []
    only_staging_moved(server.repo, before, agent)


def test_tools_and_actions(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "tools")
    base = f"/api/v2/agents/{agent}/tools"
    error(http.delete(f"{base}/search/disable"), 404, "not_found")
    before = refs(server.repo)
    r = http.post(f"{base}/search/enable")
    assert r.status_code == 200, r.text
    assert r.json()["config"]["tools"][0]["enabled"] is True
    only_staging_moved(server.repo, before, agent)
    r = http.delete(f"{base}/search/disable")
    assert r.json()["config"]["tools"][0]["enabled"] is False
    r = http.post(f"{base}/search/actions/query/enable")
    assert r.json()["config"]["tools"][0]["actions"][0] == {
        "id": "query", "enabled": True, "description": "", "config": {}}
    r = http.patch(f"{base}/search/actions/query", json={"max_results": 5, "lang": "en"})
    assert r.json()["config"]["tools"][0]["actions"][0]["config"] == {"max_results": 5,
                                                                       "lang": "en"}
    r = http.patch(f"{base}/search/actions/query", json={"lang": None, "safe": {"on": True}},
                   headers={"content-type": "application/merge-patch+json"})
    assert r.json()["config"]["tools"][0]["actions"][0]["config"] == {"max_results": 5,
                                                                       "safe": {"on": True}}
    r = http.post(f"{base}/search/actions/query/disable")
    assert r.json()["config"]["tools"][0]["actions"][0]["enabled"] is False
    before = refs(server.repo)
    error(http.post(f"{base}/search/actions/other/disable"), 404, "not_found")
    error(http.post(f"{base}/nosuch/actions/query/enable"), 404, "not_found")
    error(http.patch(f"{base}/search/actions/nosuch", json={"a": 1}), 404, "not_found")
    error(http.patch(f"{base}/search/actions/query", json=[1, 2]), 422, "invalid")
    assert refs(server.repo) == before


def test_guardrails_access_and_tags(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "guard", tags=["one", "two"])
    base = f"/api/v2/agents/{agent}"
    before = refs(server.repo)
    r = http.patch(f"{base}/guardrails", json={"type": "toxicity", "enabled": True,
                                                "config": {"threshold": 0.8}})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["guardrails"] == [
        {"type": "toxicity", "enabled": True, "config": {"threshold": 0.8}}]
    only_staging_moved(server.repo, before, agent)
    r = http.patch(f"{base}/guardrails", json={"type": "toxicity", "enabled": False})
    assert r.json()["config"]["guardrails"][0] == {"type": "toxicity", "enabled": False,
                                                   "config": {"threshold": 0.8}}
    found = error(http.patch(f"{base}/guardrails", json={"type": "toxicty", "enabled": True}),
                  422, "invalid")
    assert "did you mean toxicity" in found["error"]["message"]
    error(http.patch(f"{base}/guardrails", json={"type": "toxicity", "enabled": "yes"}), 422,
          "invalid")
    r = http.put(f"{base}/access", json={"access": "organization"})
    assert r.json()["config"]["access"] == "organization"
    error(http.put(f"{base}/access", json={"access": "everyone"}), 422, "invalid")
    r = http.post(f"{base}/annotates", json={"add": ["three", "one"], "remove": ["two"]})
    assert r.json()["config"]["tags"] == ["one", "three"]
    before = refs(server.repo)
    r = http.post(f"{base}/annotates", json={"add": ["one"]})
    assert r.status_code == 200 and r.json()["commit"] is None
    assert refs(server.repo) == before


# -- publishing and history ------------------------------------------------------------------


def test_seed_story_over_http(server: Server, http: httpx.Client) -> None:
    """Edit on Monday, Wednesday and Friday; review; publish; history; preview a revert;
    revert; publish again. Production moves only at the publishes."""
    agent = new_agent(http, "story")
    base = f"/api/v2/agents/{agent}"
    assert http.post(f"{base}/publish", json={"reason": "first version"}).status_code == 200
    prod = f"refs/heads/production/{agent}"
    v1 = refs(server.repo)[prod]
    monday = http.put(f"{base}/instructions", json=[
        {"id": "persona", "text": "You are the story bot.\nBe brief.\n"}])
    wednesday = http.post(f"{base}/corpora", json=[{"id": "faq", "settings": {"top_k": 4}}])
    friday = http.patch(f"{base}/guardrails", json={"type": "pii-redaction", "enabled": True})
    assert [r.status_code for r in (monday, wednesday, friday)] == [200, 200, 200]
    assert refs(server.repo)[prod] == v1
    diff = http.get(f"{base}/staging-diff").json()
    assert diff["has_changes"] is True
    assert {c["section"] for c in diff["changes"]} == {"instructions", "knowledge",
                                                      "guardrails"}
    published = http.post(f"{base}/publish", json={"reason": "the week's work"})
    assert published.status_code == 200, published.text
    assert published.json()["tag"] == f"{agent}/v2" and published.json()["version"] == 2
    state = refs(server.repo)
    assert state[prod] == staging(server.repo) == published.json()["commit"]
    assert f"refs/tags/{agent}/v2" in state
    tagger = git(server.repo, "for-each-ref", "--format=%(taggername) %(taggeremail)",
                 f"refs/tags/{agent}/v2")
    assert tagger == f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"
    assert http.get(f"{base}/staging-diff").json()["has_changes"] is False
    history = http.get(f"{base}/publishes").json()
    assert [e["tag"] for e in history["publishes"]] == [f"{agent}/v2", f"{agent}/v1"]
    assert history["next_cursor"] is None
    assert history["publishes"][0]["reason"] == "the week's work"
    assert history["publishes"][0]["published_by"] == {"name": AUTHOR_NAME,
                                                       "email": AUTHOR_EMAIL}
    one = http.get(f"{base}/publishes/2").json()
    assert one == history["publishes"][0]  # the same entry, read and checked the same way
    assert http.get(f"{base}/publishes/{agent}/v2").status_code == 404  # a path, not an id
    preview = http.get(f"{base}/publishes/2/diff").json()
    assert preview["action"] == "revert" and preview["conflicts"] == []
    assert {c["section"] for c in preview["staging"]["changes"]} == {"instructions",
                                                                    "knowledge", "guardrails"}
    before = refs(server.repo)
    assert refs(server.repo) == before  # a preview writes nothing
    tag = http.get(base).headers["etag"]
    reverted = http.put(f"{base}/rollback", json={"change_track_id": 2, "reason": "too much"},
                        headers={"if-match": tag})
    assert reverted.status_code == 200, reverted.text
    body = reverted.json()
    assert body["action"] == "revert" and body["tag"] == f"{agent}/v2"
    assert body["commit"] == staging(server.repo)
    assert reverted.headers["etag"] != tag
    only_staging_moved(server.repo, before, agent)
    assert refs(server.repo)[prod] == state[prod]  # production waits for the next publish
    again = http.post(f"{base}/publish", json={"reason": "undo the week"})
    assert again.status_code == 200 and again.json()["version"] == 3
    assert again.json()["reverts"] == [f"{agent}/v2"]
    live = http.get(f"{base}/production")
    assert live.json()["version"] == 3 and live.headers["etag"] == f'"{agent}/v3"'
    assert live.json()["config"]["knowledge"] == []


def test_publish_nothing_to_publish_and_errors(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "pub")
    base = f"/api/v2/agents/{agent}"
    assert http.post(f"{base}/publish", json={"reason": "v1"}).status_code == 200
    before = refs(server.repo)
    found = error(http.post(f"{base}/publish", json={"reason": "again"}), 409,
                  "nothing_to_publish")
    assert found["published"] is False and found["has_changes"] is False
    error(http.post(f"{base}/publish", json={"reason": "  "}), 400, "usage")
    error(http.post(f"{base}/publish", json={}), 422, "invalid")
    error(http.post("/api/v2/agents/ghost/publish", json={"reason": "x"}), 404, "not_found")
    assert refs(server.repo) == before


def test_publish_of_an_invalid_agent_is_422_located(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "broken")
    (server.repo / "agents" / agent / "agent.yaml").write_text(
        "name: Broken\nmodel:\n  name: m\n  temprature: 1\n")
    commit_all(server.repo, "a typo, committed by hand")
    before = refs(server.repo)
    found = error(http.post(f"/api/v2/agents/{agent}/publish", json={"reason": "x"}), 422,
                  "invalid")
    problem = found["error"]["problems"][0]
    assert problem["path"] == "model.temprature" and problem["line"] == 4
    assert "did you mean temperature" in problem["message"]
    assert refs(server.repo) == before


def test_publish_only_what_was_reviewed(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "reviewed")
    base = f"/api/v2/agents/{agent}"
    review = http.get(f"{base}/staging-diff")
    assert review.headers["etag"] == http.get(base).headers["etag"]
    http.put(f"{base}/access", json={"access": "team"})  # changed after the review
    before = refs(server.repo)
    error(http.post(f"{base}/publish", json={"reason": "x"},
                    headers={"if-match": review.headers["etag"]}), 412, "precondition_failed")
    assert refs(server.repo) == before
    again = http.get(f"{base}/staging-diff")
    r = http.post(f"{base}/publish", json={"reason": "reviewed"},
                  headers={"if-match": again.headers["etag"]})
    assert r.status_code == 200, r.text
    assert r.json()["commit"] == again.json()["staging"]["commit"]


def test_publishes_pages_with_a_cursor(http: httpx.Client) -> None:
    agent = new_agent(http, "pages")
    base = f"/api/v2/agents/{agent}"
    for n in range(5):
        http.patch(f"{base}/fields", json={"set": {"description": f"d{n}"}})
        assert http.post(f"{base}/publish", json={"reason": f"r{n}"}).status_code == 200
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"{base}/publishes", params=params).json()
        seen += [e["version"] for e in page["publishes"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    assert [e["version"] for e in http.get(
        f"{base}/publishes", params={"author": "nobody"}).json()["publishes"]] == []
    everyone = http.get("/api/v2/publishes", params={"limit": 500}).json()["publishes"]
    assert {f"{agent}/v{n}" for n in range(1, 6)} <= {e["tag"] for e in everyone}
    error(http.get(f"{base}/publishes", params={"limit": 0}), 400, "usage")
    error(http.get(f"{base}/publishes", params={"since": "yesterday"}), 400, "usage")
    error(http.get(f"{base}/publishes", params={"cursor": "nope/v1"}), 400, "usage")
    error(http.get(f"{base}/publishes/9"), 404, "not_found")
    error(http.get(f"{base}/publishes/x9"), 400, "usage")
    error(http.get(f"{base}/publishes/1/diff", params={"action": "undo"}), 400, "usage")


def test_restore_and_rollback_errors(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "restore")
    base = f"/api/v2/agents/{agent}"
    assert http.post(f"{base}/publish", json={"reason": "v1"}).status_code == 200
    http.put(f"{base}/access", json={"access": "team"})
    assert http.post(f"{base}/publish", json={"reason": "v2"}).status_code == 200
    http.put(f"{base}/access", json={"access": "public"})
    preview = http.get(f"{base}/publishes/1/diff", params={"action": "restore"}).json()
    assert preview["action"] == "restore"
    assert [c["path"] for c in preview["staging"]["changes"]] == ["access"]
    before = refs(server.repo)
    found = error(http.put(f"{base}/rollback", json={"change_track_id": 2}), 409, "conflict")
    assert found["conflicts"][0]["path"] == "access"
    error(http.put(f"{base}/rollback", json={"change_track_id": 7}), 404, "not_found")
    error(http.put(f"{base}/rollback", json={"change_track_id": "other-agent/v1"}), 400,
          "usage")
    error(http.put(f"{base}/restore", json={}), 422, "invalid")
    error(http.put(f"{base}/restore", json={"change_track_id": 1},
                   headers={"if-match": '"0000"'}), 412, "precondition_failed")
    assert refs(server.repo) == before
    r = http.put(f"{base}/restore", json={"change_track_id": f"{agent}/v1", "reason": "back"})
    assert r.status_code == 200, r.text
    assert r.json()["action"] == "restore" and r.json()["config"]["access"] == "private"
    only_staging_moved(server.repo, before, agent)
    assert f"Agentstage-Restore: {agent}/v1" in git(server.repo, "log", "-1", "--format=%B",
                                                    "staging")


# -- delivery --------------------------------------------------------------------------------


def test_delivery_production_and_list_with_etags(http: httpx.Client) -> None:
    agent = new_agent(http, "deliver")
    error(http.get(f"/api/v2/agents/{agent}/production"), 404, "not_found")
    assert agent not in {r["agent"] for r in http.get("/api/v2/production").json()}
    assert http.post(f"/api/v2/agents/{agent}/publish", json={"reason": "go"}).status_code == 200
    r = http.get(f"/api/v2/agents/{agent}/production")
    body = r.json()
    assert (body["agent"], body["version"], body["tag"]) == (agent, 1, f"{agent}/v1")
    assert body["config"]["name"] == f"Agent {agent}" and body["published_at"]
    assert r.headers["etag"] == f'"{agent}/v1"'
    assert http.get(f"/api/v2/agents/{agent}/production",
                    headers={"if-none-match": r.headers["etag"]}).status_code == 304
    http.patch(f"/api/v2/agents/{agent}/fields", json={"set": {"description": "staged only"}})
    assert http.get(f"/api/v2/agents/{agent}/production").json()["config"]["description"] == ""
    listing = http.get("/api/v2/production")
    assert {"agent": agent, "version": 1, "tag": f"{agent}/v1"} in listing.json()
    assert http.get("/api/v2/production",
                    headers={"if-none-match": listing.headers["etag"]}).status_code == 304
    http.post(f"/api/v2/agents/{agent}/publish", json={"reason": "two"})
    assert http.get("/api/v2/production",
                    headers={"if-none-match": listing.headers["etag"]}).status_code == 200


# -- what an attacker's page can send --------------------------------------------------------


def test_dns_rebinding_host_is_refused(server: Server, http: httpx.Client) -> None:
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.evil.example"):
        error(http.get("/api/v2/agents", headers={"host": host}), 400, "usage")
    assert http.get("/api/v2/agents", headers={"host": f"localhost:{server.port}"}) \
        .status_code == 200
    assert http.get("/healthz", headers={"host": "10.0.0.5"}).status_code == 200


def test_cross_site_writes_are_refused(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "xsite")
    before = refs(server.repo)
    url = f"/api/v2/agents/{agent}/publish"
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                    {"origin": f"http://localhost:{server.port}"},  # another origin than Host
                    {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}):
        error(http.post(url, json={"reason": "x"}, headers=headers), 403, "policy")
        error(http.post(url, headers=headers), 403, "policy")  # bodies or not
    assert refs(server.repo) == before
    ok = http.post(url, json={"reason": "own page"},
                   headers={"origin": server.url, "sec-fetch-site": "same-origin"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_simple_request_bodies_are_415(server: Server, http: httpx.Client,
                                       content_type: str | None) -> None:
    """What a cross-site form or fetch without a preflight can send."""
    agent = new_agent(http, "ctype")
    before = refs(server.repo)
    headers = {"content-type": content_type} if content_type else {}
    r = http.post(f"/api/v2/agents/{agent}/publish", content=b'{"reason": "x"}',
                  headers=headers)
    if content_type is None:
        assert "content-type" not in r.request.headers
    error(r, 415, "unsupported_media_type")
    assert refs(server.repo) == before


def test_body_over_one_mib_is_413(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "big")
    before = refs(server.repo)
    text = "x" * (1024 * 1024 + 10)
    r = http.patch(f"/api/v2/agents/{agent}/fields",
                   json={"set": {"description": text}})
    error(r, 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        yield b'{"set": {"description": "'
        for _ in range(17):
            yield b"y" * 65536
        yield b'"}}'

    r = http.patch(f"/api/v2/agents/{agent}/fields", content=chunks(), headers=JSON)
    error(r, 413, "too_large")
    assert refs(server.repo) == before
    small = http.patch(f"/api/v2/agents/{agent}/fields",
                       json={"set": {"description": "y" * 500_000}})
    assert small.status_code == 200


def test_malformed_json_is_400(http: httpx.Client) -> None:
    agent = new_agent(http, "malformed")
    for body in (b'{"set": ', b"\xff\xfe", b"[1, 2"):
        error(http.patch(f"/api/v2/agents/{agent}/fields", content=body, headers=JSON), 400,
              "usage")


# -- concurrency -----------------------------------------------------------------------------


def test_if_match_stale_is_412_and_writes_nothing(server: Server, http: httpx.Client) -> None:
    agent = new_agent(http, "ifmatch")
    tag = http.get(f"/api/v2/agents/{agent}").headers["etag"]
    http.patch(f"/api/v2/agents/{agent}/fields", json={"set": {"description": "moved"}})
    before = refs(server.repo)
    error(http.put(f"/api/v2/agents/{agent}/access", json={"access": "team"},
                   headers={"if-match": tag}), 412, "precondition_failed")
    assert refs(server.repo) == before
    fresh = http.get(f"/api/v2/agents/{agent}").headers["etag"]
    ok = http.put(f"/api/v2/agents/{agent}/access", json={"access": "team"},
                  headers={"if-match": fresh})
    assert ok.status_code == 200


def test_two_clients_with_the_same_if_match_one_wins(server: Server,
                                                     http: httpx.Client) -> None:
    agent = new_agent(http, "twoclients")
    tag = http.get(f"/api/v2/agents/{agent}").headers["etag"]
    start = threading.Barrier(2, timeout=30)
    statuses: list[int] = []

    def send(value: str) -> None:
        with server.client() as client:
            start.wait()
            r = client.patch(f"/api/v2/agents/{agent}/fields",
                             json={"set": {"description": value}}, headers={"if-match": tag})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=send, args=(v,)) for v in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) == [200, 412]


# -- a hostile corpus: clean statuses, nothing written ---------------------------------------


@pytest.mark.parametrize("depth", [40, 500, 5000, 100_000])
def test_deep_json_is_refused(server: Server, http: httpx.Client, depth: int) -> None:
    agent = new_agent(http, "deep")
    before = refs(server.repo)
    body = '{"set": {"model.parameters.x": ' + "[" * depth + "]" * depth + "}}"
    r = http.patch(f"/api/v2/agents/{agent}/fields", content=body.encode(), headers=JSON)
    error(r, 400, "usage")
    assert refs(server.repo) == before


@pytest.mark.parametrize("body", [
    b'{"set": {"description": "\\ud800"}}',  # valid JSON, not Unicode
    b'{"set": {"\\"\\udfff\\"": 1}}',
    b'{"set": {"description": "\xed\xa0\x80"}}',  # a surrogate in (CESU) bytes
    b'{"set": {"description": "\xff"}}',
    b'{"set": {"description": "ok"}, "message": "\\udc00"}',
])
def test_text_that_is_not_unicode_is_refused(server: Server, http: httpx.Client,
                                             body: bytes) -> None:
    agent = new_agent(http, "unicode")
    before = refs(server.repo)
    error(http.patch(f"/api/v2/agents/{agent}/fields", content=body, headers=JSON), 400,
          "usage")
    assert refs(server.repo) == before


def test_hostile_texts_are_kept_as_data(http: httpx.Client) -> None:
    agent = new_agent(http, "hostile")
    texts = {"description": "<script>alert(1)</script>", "model.parameters.nul": "a\u0000b",
             "model.parameters.rtl": "\u202eevil", "model.parameters.bell": "\x07\x1b[31m"}
    r = http.patch(f"/api/v2/agents/{agent}/fields", json={"set": texts})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        config = http.get(f"/api/v2/agents/{agent}").json()
        assert config["description"] == texts["description"]
        assert config["model"]["parameters"]["nul"] == "a\u0000b"


@pytest.mark.parametrize("path", ["/api/v2/agents/..%2F..%2Fetc", "/api/v2/agents/%2e%2e",
                                  "/api/v2/agents/a%00b/production",
                                  "/api/v2/agents/hr-helpdesk/instructions/..%2Fx"])
def test_ids_that_are_paths_are_refused(server: Server, http: httpx.Client, path: str) -> None:
    before = refs(server.repo)
    for method in ("GET", "DELETE"):
        r = http.request(method, path)
        assert r.status_code in (400, 404, 405), r.text
        assert r.json()["error"]["code"] in ("usage", "not_found", "method_not_allowed")
    assert refs(server.repo) == before
