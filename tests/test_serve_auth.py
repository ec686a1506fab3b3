"""Identity and policy over HTTP: `--auth tokens` with `agentstage token`, `--auth
header:NAME` behind a proxy, and the policy of refs/meta/agentstage deciding every write
(DESIGN.md section 8, "Who"). Real `agentstage serve` processes, real token files, real
commits; every refused write is checked to have moved no ref.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import git
from test_serve import Server, cli, error, refs, sample_repo, server_env

POLICY = """\
admins: [alice]
editors: [ed, pub]
publishers:
  "*": [star]
  billing-support: [pub]
users:
  pub: [pub@example.com]
"""

ROLES = ("alice", "ed", "pub", "star", "nobody")
# what each write needs: an editor (or admin) for staging, a publisher of the agent (or admin)
# for a publish of billing-support
MAY_EDIT = {"alice", "ed", "pub"}
MAY_PUBLISH = {"alice", "pub", "star"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A repository with the policy above, a token for each role, and a server with
    --auth tokens."""
    base = tmp_path_factory.mktemp("auth")
    repo = sample_repo(base)
    env = server_env(base / "home")
    (base / "policy.yaml").write_text(POLICY)
    assert cli(repo, env, "policy", "set", str(base / "policy.yaml")).returncode == 0
    tokens = {}
    for name in ROLES:
        made = cli(repo, env, "token", "create", name, *(
            ["--email", f"{name}@example.com"] if name != "pub" else []))
        assert made.returncode == 0, made.stderr
        tokens[name] = made.stdout.strip()
    server = Server(repo, env, "--auth", "tokens")
    found: dict[str, Any] = {"repo": repo, "env": env, "tokens": tokens, "server": server}
    yield found
    assert server.stop() == 0, server.stderr
    if "expect_in_log" in found:
        assert found["expect_in_log"] in server.stderr


def as_(site: dict[str, Any], name: str) -> httpx.Client:
    client: httpx.Client = site["server"].client(
        headers={"authorization": f"Bearer {site['tokens'][name]}"})
    return client


# -- agentstage token ----------------------------------------------------------------------


def test_token_create_prints_the_secret_alone_and_keeps_only_its_hash(
        tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    made = cli(repo, env, "token", "create", "ci-bot", "--email", "ci@example.com",
               "--expires", "30")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n" and secret.startswith("ast_")
    assert "shown only this once" in made.stderr
    file = repo / ".git" / "agentstage-tokens.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    text = file.read_text()
    assert secret not in text and secret.rpartition("_")[2] not in text
    assert "agentstage-tokens" not in git(repo, "ls-files")  # never in history
    listed = cli(repo, env, "token", "list", "--format", "json")
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["email"], r["expired"]) for r in rows] == \
        [("ci-bot", "ci@example.com", False)]
    assert rows[0]["expires"] is not None and secret not in listed.stdout
    assert "ci-bot <ci@example.com>" in cli(repo, env, "token", "list").stdout
    assert cli(repo, env, "token", "revoke", "ci-bot").returncode == 0
    assert json.loads(cli(repo, env, "token", "list", "--format", "json").stdout) == []
    gone = cli(repo, env, "token", "revoke", "ci-bot")
    assert gone.returncode == 6 and "token list" in gone.stderr


def test_token_create_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    for args in (["a<b>"], ["alice", "--email", "not-an-email"], ["alice", "--expires", "0"],
                 [" "]):
        done = cli(repo, env, "token", "create", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (repo / ".git" / "agentstage-tokens.json").exists()


def test_token_email_defaults_to_the_policys_users_entry(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert cli(repo, env, "policy", "set", str(tmp_path / "policy.yaml")).returncode == 0
    assert cli(repo, env, "token", "create", "pub").returncode == 0
    assert cli(repo, env, "token", "create", "zed").returncode == 0
    rows = json.loads(cli(repo, env, "token", "list", "--format", "json").stdout)
    assert {r["name"]: r["email"] for r in rows} == {"pub": "pub@example.com",
                                                     "zed": "zed@agentstage.invalid"}


def test_concurrent_token_creates_lose_none(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    procs = [subprocess.Popen([sys.executable, "-m", "agentstage", "-C", str(repo), "token",
                               "create", f"user{i}", "--email", f"u{i}@example.com"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for i in range(8)]
    secrets = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    rows = json.loads(cli(repo, env, "token", "list", "--format", "json").stdout)
    assert sorted(r["name"] for r in rows) == sorted(f"user{i}" for i in range(8))
    assert len(set(secrets)) == 8


# -- --auth tokens ---------------------------------------------------------------------------


def test_no_or_bad_credentials_get_401_on_every_api_route(site: dict[str, Any]) -> None:
    server: Server = site["server"]
    good = site["tokens"]["alice"]
    bad = [{}, {"authorization": "Bearer"}, {"authorization": "Basic YWxpY2U6eA=="},
           {"authorization": "Bearer nonsense"},
           {"authorization": "Bearer " + good[:-2] + ("AA" if not good.endswith("AA") else "BB")},
           {"authorization": "Bearer ast_000000000000_" + good.rpartition("_")[2]}]
    before = refs(site["repo"])
    with server.client() as http:
        for headers in bad:
            for method, path, body in (
                    ("GET", "/api/v2/agents", None),
                    ("GET", "/api/v2/agents/billing-support/production", None),
                    ("GET", "/api/v2/agents/billing-support/staging-diff", None),
                    ("PATCH", "/api/v2/agents/billing-support/fields",
                     {"set": {"model.temperature": 0.1}}),
                    ("POST", "/api/v2/agents/billing-support/publish", {"reason": "x"})):
                r = http.request(method, path, json=body, headers=headers)
                error(r, 401, "unauthenticated")
                assert r.headers["www-authenticate"].startswith("Bearer")
        assert http.get("/healthz").status_code == 200  # load balancers need no credentials
    assert refs(site["repo"]) == before


def test_every_role_against_every_write(site: dict[str, Any]) -> None:
    """Editors (and admins) write staging; publishers of the agent (and admins) publish;
    everyone else gets 403 naming the rule, and nothing moves."""
    repo: Path = site["repo"]
    for name in ROLES:
        with as_(site, name) as http:
            assert http.get("/api/v2/agents").status_code == 200  # anyone may read
            writes = [
                ("edit", "PATCH", "/api/v2/agents/billing-support/fields",
                 {"set": {"model.temperature": round(0.1 + ROLES.index(name) / 100, 2)}}),
                ("edit", "POST", "/api/v2/agents",
                 {"id": f"made-by-{name}", "name": f"Made by {name}"}),
                ("edit", "PUT", "/api/v2/agents/billing-support/access",
                 {"access": ("organization", "public", "private", "team", "team")[
                     ROLES.index(name)]}),
                ("publish", "POST", "/api/v2/agents/billing-support/publish",
                 {"reason": f"{name} publishes"}),
                ("edit", "PUT", "/api/v2/agents/billing-support/rollback",
                 {"change_track_id": 1, "reason": f"{name} reverts v1 (the agent leaves)"}),
                ("edit", "PUT", "/api/v2/agents/billing-support/restore",
                 {"change_track_id": 1, "reason": f"{name} restores (it is back)"}),
            ]
            for kind, method, path, body in writes:
                allowed = name in (MAY_EDIT if kind == "edit" else MAY_PUBLISH)
                before = refs(repo)
                r = http.request(method, path, json=body)
                if not allowed:
                    found = error(r, 403, "policy")
                    assert name in found["error"]["message"]
                    assert ("editors" if kind == "edit" else "publishers") in \
                        found["error"]["message"]
                    assert "refs/meta/agentstage" in found["error"]["hint"]
                    assert refs(repo) == before, (name, path)
                    continue
                assert r.status_code in (200, 201, 409), (name, path, r.text)
                if r.status_code == 409:  # nothing to publish, or unchanged: still allowed
                    assert r.json()["error"]["code"] in ("nothing_to_publish", "conflict")
                    continue
                email = "pub@example.com" if name == "pub" else f"{name}@example.com"
                if kind == "edit" and r.json()["commit"] == before["refs/heads/staging"]:
                    continue  # nothing changed: no commit to check
                if kind == "edit":
                    author = git(repo, "log", "-1", "--format=%an <%ae>", "staging")
                else:
                    tag = r.json()["tag"]
                    author = git(repo, "for-each-ref", "--format=%(taggername) %(taggeremail)",
                                 f"refs/tags/{tag}")
                assert author == f"{name} <{email}>", (name, path)


def test_revoked_and_expired_tokens_get_401_within_a_second(site: dict[str, Any]) -> None:
    repo: Path = site["repo"]
    env: dict[str, str] = site["env"]
    for name in ("temp-revoked", "temp-expired"):
        made = cli(repo, env, "token", "create", name, "--email", f"{name}@example.com")
        site["tokens"][name] = made.stdout.strip()
        with as_(site, name) as http:
            deadline = time.monotonic() + 2  # a new token is honoured within a second, too
            while http.get("/api/v2/agents").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert cli(repo, env, "token", "revoke", "temp-revoked").returncode == 0
    file = repo / ".git" / "agentstage-tokens.json"
    doc = json.loads(file.read_text())
    for entry in doc["tokens"]:
        if entry["name"] == "temp-expired":
            entry["expires"] = "2020-01-01T00:00:00+00:00"
    file.write_text(json.dumps(doc))
    gone_at = time.monotonic()
    for name in ("temp-revoked", "temp-expired"):
        with as_(site, name) as http:
            while http.get("/api/v2/agents").status_code != 401:
                assert time.monotonic() - gone_at < 1.5, name
                time.sleep(0.05)
    rows = json.loads(cli(repo, env, "token", "list", "--format", "json").stdout)
    assert [r["expired"] for r in rows if r["name"] == "temp-expired"] == [True]


def test_the_access_log_names_the_tokens_identity(site: dict[str, Any]) -> None:
    with as_(site, "ed") as http:
        assert http.get("/api/v2/agents/billing-support").status_code == 200
    # the server's stderr is read when it stops; the module fixture checks it then
    site["expect_in_log"] = 'identity="ed <ed@example.com>"'


# -- --auth header:NAME ----------------------------------------------------------------------


def test_header_auth_takes_the_proxys_identity(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert cli(repo, env, "policy", "set", str(tmp_path / "policy.yaml")).returncode == 0
    server = Server(repo, env, "--auth", "header:X-Forwarded-User")
    try:
        with server.client() as http:
            error(http.get("/api/v2/agents"), 401, "unauthenticated")
            r = http.get("/api/v2/agents", headers={"x-forwarded-user": ""})
            error(r, 401, "unauthenticated")
            before = refs(repo)
            r = http.put("/api/v2/agents/billing-support/access", json={"access": "public"},
                         headers={"x-forwarded-user": "nobody"})
            assert "editors" in error(r, 403, "policy")["error"]["message"]
            assert refs(repo) == before
            # a plain name: the policy's users entry gives the email
            r = http.put("/api/v2/agents/billing-support/access", json={"access": "public"},
                         headers={"x-forwarded-user": "pub"})
            assert r.status_code == 200, r.text
            assert git(repo, "log", "-1", "--format=%an <%ae>", "staging") == \
                "pub <pub@example.com>"
            # an email, and Name <email>
            r = http.put("/api/v2/agents/billing-support/access", json={"access": "private"},
                         headers={"x-forwarded-user": "Ed Itor <ed@example.com>"})
            assert "Ed Itor may not edit" in error(r, 403, "policy")["error"]["message"]
            r = http.put("/api/v2/agents/billing-support/access", json={"access": "private"},
                         headers={"x-forwarded-user": "ed"})
            assert r.status_code == 200, r.text
            assert git(repo, "log", "-1", "--format=%an <%ae>", "staging") == \
                "ed <ed@agentstage.invalid>"
    finally:
        assert server.stop() == 0, server.stderr
    assert 'identity="pub <pub@example.com>" method=PUT' in server.stderr


def test_auth_none_applies_the_policy_to_the_clis_identity(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")  # the CLI's identity is "Serve Author"
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert cli(repo, env, "policy", "set", str(tmp_path / "policy.yaml")).returncode == 0
    server = Server(repo, env)
    try:
        with server.client() as http:
            assert http.get("/api/v2/agents").status_code == 200
            r = http.put("/api/v2/agents/billing-support/access", json={"access": "public"})
            assert "Serve Author may not edit staging" in error(r, 403, "policy")["error"][
                "message"]
    finally:
        assert server.stop() == 0, server.stderr


# -- binding ---------------------------------------------------------------------------------


def test_a_non_loopback_bind_needs_auth(tmp_path: Path) -> None:
    """--auth none on 0.0.0.0 is refused at start; with tokens it serves (and still checks
    the Host of each request)."""
    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    refused = cli(repo, env, "serve", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2 and "not a loopback address" in refused.stderr
    assert cli(repo, env, "serve", "--tokens", "x.json", "--port", "0").returncode == 2
    proc = subprocess.Popen([sys.executable, "-m", "agentstage", "-C", str(repo), "serve",
                             "--host", "0.0.0.0", "--port", "0", "--auth", "tokens"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        url = proc.stdout.readline().strip() if ready else ""
        assert url.startswith("http://0.0.0.0:"), url
        port = url.rpartition(":")[2]
        r = httpx.get(f"http://127.0.0.1:{port}/api/v2/agents", timeout=10,
                      headers={"host": f"0.0.0.0:{port}"})
        error(r, 401, "unauthenticated")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "no tokens in" in err  # said at start: every request will get 401


def test_a_tokens_file_shared_by_two_servers(tmp_path: Path) -> None:
    """--tokens FILE: one file for several servers; a token made once works on both."""
    shared = tmp_path / "tokens.json"
    env = server_env(tmp_path / "home")
    repos = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        repos.append(sample_repo(tmp_path / name))
    made = cli(repos[0], env, "token", "create", "alice", "--email", "a@example.com",
               "--tokens", str(shared))
    secret = made.stdout.strip()
    servers = [Server(r, env, "--auth", "tokens", "--tokens", str(shared)) for r in repos]
    try:
        for server in servers:
            with server.client(headers={"authorization": f"Bearer {secret}"}) as http:
                assert http.get("/api/v2/agents").status_code == 200
    finally:
        for server in servers:
            assert server.stop() == 0, server.stderr
    assert not os.path.exists(repos[0] / ".git" / "agentstage-tokens.json")
