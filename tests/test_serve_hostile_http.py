"""A hostile corpus against a real `agentstage serve` over HTTP: bodies just over the cap
(with and without Content-Length), broken framing, deep JSON, text that is not Unicode,
ids that are paths or look-alikes, markup in texts, wrong types, unknown fields and bad
query parameters. Each is refused with a status of DESIGN.md's error table, in the error
shape, naming what is wrong; and nothing is written: every ref, the work tree and
`git fsck` are as before. Markup that is stored comes back as JSON data, never as HTML.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import git, tree_state
from test_serve import Server, sample_repo, server_env

AGENT = "bot"
API = f"/api/v2/agents/{AGENT}"
MIB = 1024 * 1024
JSON = {"content-type": "application/json"}
CODES = {400: "usage", 401: "unauthenticated", 403: "policy", 404: "not_found",
         409: "conflict", 412: "precondition_failed", 413: "too_large",
         415: "unsupported_media_type", 422: "invalid"}
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server over the sample agents and `bot` (a tool with an action, a corpus, an
    instruction), published as v1 and edited since."""
    base = tmp_path_factory.mktemp("hostile")
    running = Server(sample_repo(base), server_env(base / "home"))
    with running.client() as http:
        assert http.post("/api/v2/agents", json={"id": AGENT, "name": "Bot"}).status_code == 201
        http.patch(f"{API}/fields", json={"set": {
            "tools[web]": {"enabled": True, "actions": [{"id": "look"}]},
            "knowledge[faq]": {"type": "corpus"}}}).raise_for_status()
        http.post(f"{API}/publish", json={"reason": "v1"}).raise_for_status()
        http.patch(f"{API}/fields", json={"set": {"description": "staged"}}).raise_for_status()
    yield running
    assert running.stop() == 0
    assert "Traceback" not in running.stderr, running.stderr[-5000:]
    assert " status=500 " not in running.stderr


@pytest.fixture
def http(served: Server) -> Iterator[httpx.Client]:
    with served.client() as client:
        yield client


def state(repo: Path) -> tuple[str, str]:
    return tree_state(repo), git(repo, "status", "--porcelain", "--untracked-files=all")


@pytest.fixture
def still(served: Server) -> Iterator[None]:
    """Nothing written: every ref and the work tree as before, and git fsck clean."""
    before = state(served.repo)
    yield
    assert state(served.repo) == before
    git(served.repo, "fsck", "--strict")


def refused(r: httpx.Response, status: int, *names: str) -> dict[str, Any]:
    """*r* is the error of DESIGN.md's table for *status*, as JSON, naming each of *names*
    in its message or in one of its problems."""
    assert r.status_code == status, (r.status_code, r.text[:2000])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    error = body["error"]
    assert error["code"] == CODES[status], body
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in r.text
    said = error["message"] + " " + " ".join(
        f"{p['file']} {p['path']} {p['message']}" for p in error.get("problems") or [])
    for name in names:
        assert name in said, (name, body)
    return body


# -- bodies over the cap ---------------------------------------------------------------------

BODY_ROUTES = [
    ("POST", "/api/v2/agents"), ("PUT", API), ("PATCH", f"{API}/fields"),
    ("POST", f"{API}/instructions"), ("PUT", f"{API}/instructions"),
    ("POST", f"{API}/corpora"), ("DELETE", f"{API}/corpora"), ("POST", f"{API}/corpora/new"),
    ("PUT", f"{API}/corpora/faq"), ("POST", f"{API}/sharepoint/folder"),
    ("PATCH", f"{API}/tools/web/actions/look"), ("PATCH", f"{API}/guardrails"),
    ("PUT", f"{API}/access"), ("POST", f"{API}/annotates"), ("POST", f"{API}/publish"),
    ("PUT", f"{API}/rollback"), ("PUT", f"{API}/restore"),
    # routes that take no body read up to the cap all the same
    ("POST", f"{API}/tools/web/enable"), ("DELETE", f"{API}/instructions/persona"),
    ("GET", API),
]


def over_the_cap(size: int) -> bytes:
    """A JSON object of exactly *size* bytes."""
    head, tail = b'{"description": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def chunked(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start:start + 65536]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize(("method", "url"), BODY_ROUTES)
def test_a_body_just_over_one_mib_is_413(http: httpx.Client, still: None, method: str,
                                         url: str, framing: str) -> None:
    data = over_the_cap(MIB + 1)
    content = data if framing == "content-length" else chunked(data)
    r = http.request(method, url, content=content, headers=JSON)
    assert ("content-length" in r.request.headers) == (framing == "content-length")
    refused(r, 413, "1048576 bytes")


def test_a_body_of_one_mib_is_read_and_a_file_over_the_cap_refused(
        http: httpx.Client, still: None) -> None:
    """One MiB is under the cap, but agent.yaml cannot hold a description that long: 422
    naming the file and the field (it was an internal error)."""
    head, tail = b'{"set": {"description": "', b'"}}'
    data = head + b"y" * (MIB - len(head) - len(tail)) + tail
    assert len(data) == MIB
    for content in (data, chunked(data)):
        body = refused(http.patch(f"{API}/fields", content=content, headers=JSON), 422,
                       "description", "over the cap")
        assert body["error"]["problems"][0]["file"] == f"agents/{AGENT}/agent.yaml"


def test_the_command_line_refuses_a_file_over_the_cap_too(run: Any, repo: Path,
                                                          tmp_path: Path) -> None:
    """The same value through `set description=@FILE`: exit 4 naming the field, not 70."""
    big = tmp_path / "big.txt"
    big.write_text("z" * (MIB - 64))
    before = tree_state(repo)
    result = run("set", "hr-helpdesk", f"description=@{big}", repo=repo)
    assert result.code == 4, result
    assert "description" in result.err and "over the cap" in result.err
    assert "internal error" not in result.err
    assert tree_state(repo) == before


# -- framing: refused by the HTTP layer, before the app ---------------------------------------


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("head", [
    b"Content-Length: abc\r\n",
    b"Content-Length: -5\r\n",
    b"Content-Length: 99999999999999999999999999\r\n",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
    b"Content-Length: 2\r\nContent-Length: 3\r\n",
    b"Transfer-Encoding: gzip, chunked, identity\r\n",
])
def test_broken_framing_is_400_and_reflects_nothing(served: Server, still: None,
                                                    head: bytes) -> None:
    request = (f"POST {API}/publish HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
               "Content-Type: application/json\r\nConnection: close\r\n").encode() + head \
        + b'\r\n{"reason": "<script>x</script>"}'
    answer = raw(served.port, request)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split(b" ")[1] == b"400", answer
    assert b"<script>" not in answer and b"text/html" not in rest.lower()


@pytest.mark.parametrize("target", [b"/api/v2/agents/\xff", b"/api/v2/agents/a b",
                                    b"/api/v2/agents/<script>"])
def test_a_request_line_that_is_not_http_is_400(served: Server, still: None,
                                                target: bytes) -> None:
    answer = raw(served.port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:"
                 + str(served.port).encode() + b"\r\nConnection: close\r\n\r\n")
    assert answer.split(b" ")[1] in (b"400", b"404"), answer
    assert b"text/html" not in answer.lower()


def test_a_body_sent_slowly_holds_no_lock(served: Server, http: httpx.Client) -> None:
    """A client that announces a body and never sends it does not stop other writes, and
    writes nothing when it goes away."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as slow:
        slow.sendall((f"PATCH {API}/fields HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                      '{"set": {"description"').encode())
        time.sleep(0.3)
        started = time.monotonic()
        r = http.patch(f"{API}/fields", json={"set": {"model.parameters.slow": 1}})
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < 5
        after = state(served.repo)
    time.sleep(0.3)
    assert state(served.repo) == after
    assert http.get(API).json()["model"]["parameters"]["slow"] == 1


# -- deep JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url", "body", "named"), [
    ("POST", f"{API}/instructions", b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    ("POST", f"{API}/instructions", b"[" * 100_000, "nested too deep"),
    ("PATCH", f"{API}/fields", b'{"set": ' * 50_000 + b"{}" + b"}" * 50_000, "nested too deep"),
    ("PATCH", f"{API}/tools/web/actions/look", b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
     "nested too deep"),
    ("POST", "/api/v2/agents", b'{"id": "deep", "name": "D", "model": ' + b"[" * 100_000
     + b"]" * 100_000 + b"}", "nested too deep"),
    ("PATCH", f"{API}/fields",
     b'{"set": {"model.parameters.x": ' + b"[" * 500 + b"]" * 500 + b"}}",
     "model.parameters.x"),
    ("PATCH", f"{API}/tools/web/actions/look", b'{"a": ' * 900 + b"1" + b"}" * 900,
     "tools[web].actions[look].config"),
    ("POST", f"{API}/corpora", b'[{"id": "c", "settings": ' + b'{"a": ' * 40 + b"1"
     + b"}" * 40 + b"}]", "knowledge[c]"),
    ("PUT", API, b'{"description": ' + b"[" * 500 + b"]" * 500 + b"}", "description"),
])
def test_deep_json_is_400(http: httpx.Client, still: None, method: str, url: str,
                          body: bytes, named: str) -> None:
    refused(http.request(method, url, content=body, headers=JSON), 400, named)


# -- text that is not Unicode ------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url", "body", "named"), [
    ("POST", "/api/v2/agents", b'{"id": "\xff", "name": "x"}', "UTF-8"),
    ("PATCH", f"{API}/fields", b'{"set": {"description": "\xed\xa0\x80"}}', "UTF-8"),
    ("PATCH", f"{API}/fields", b'{"set": {"description": "\xc0\xaf"}}', "UTF-8"),
    ("POST", f"{API}/publish", '{"reason": "x"}'.encode("utf-16"), "UTF-8"),
    ("POST", f"{API}/publish", '{"reason": "é"}'.encode("latin-1"), "UTF-8"),
    ("PATCH", f"{API}/fields", b'{"set": {"description": "\\ud800"}}', "set.description"),
    ("PATCH", f"{API}/fields", b'{"set": {"\\udfff": 1}}', "set (a key)"),
    ("PATCH", f"{API}/fields", b'{"set": {"description": "ok"}, "message": "\\udc00"}',
     "message"),
    ("POST", f"{API}/publish", b'{"reason": "\\ud800 why"}', "reason"),
    ("POST", f"{API}/instructions", b'[{"id": "a", "text": "\\udfff"}]', "0.text"),
    ("POST", "/api/v2/agents", b'{"id": "\\ud800", "name": "x"}', "id"),
    ("PATCH", f"{API}/guardrails", b'{"type": "x-\\ud800", "enabled": true}', "type"),
    ("POST", f"{API}/annotates", b'{"add": ["ok", "\\ud83d"]}', "add.1"),
    ("PATCH", f"{API}/tools/web/actions/look", b'{"k": {"\\ud800": 1}}', "k (a key)"),
    ("PUT", f"{API}/rollback", b'{"change_track_id": 1, "reason": "\\ude00"}', "reason"),
])
def test_text_that_is_not_unicode_is_400(http: httpx.Client, still: None, method: str,
                                         url: str, body: bytes, named: str) -> None:
    refused(http.request(method, url, content=body, headers=JSON), 400, named)


@pytest.mark.parametrize("url", [
    "/api/v2/agents/%ED%A0%80", "/api/v2/agents/%FF", f"{API}/publishes?since=%ED%A0%80",
    f"{API}/publishes?cursor=%FF", f"{API}/publishes/%C0%AF"])
def test_ids_and_parameters_that_are_not_unicode_are_400(http: httpx.Client, still: None,
                                                         url: str) -> None:
    refused(http.get(url), 400)


# -- ids that are paths, or look like a real one -----------------------------------------------

# no id of any kind: agents (a-z, 0-9, -), entries (letters, digits, _ . : -), publishes (N)
HOSTILE_IDS = [
    "%2e%2e", "%2E", "..%2F..%2Fetc", "bot%2Finstructions", "bot%2F..", "%5C..%5Cetc", "%00",
    "bot%00", "a" * 5000, "b%D0%BEt",  # a Cyrillic о
    "%EF%BD%82ot",  # a fullwidth b (NFKC: bot)
    "bot%20", "bot%0A", "bot%E2%80%8B",  # a zero-width space
    "-bot", "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "%25", "~bot", "bot%3Bx", "%F0%9F%A4%96",
]
AGENT_LOOKALIKES = ["BOT", "Bot", "bot%C2%AD", "bot.", "bot%09"]  # %C2%AD: a soft hyphen
ID_ROUTES = [
    ("GET", "/api/v2/agents/{}", None), ("PUT", "/api/v2/agents/{}", {"description": "x"}),
    ("PATCH", "/api/v2/agents/{}/fields", {"set": {"description": "x"}}),
    ("POST", "/api/v2/agents/{}/publish", {"reason": "x"}),
    ("PUT", "/api/v2/agents/{}/instructions", []),
    ("PUT", "/api/v2/agents/{}/rollback", {"change_track_id": 1}),
    ("GET", "/api/v2/agents/{}/publishes", None), ("GET", "/api/v2/agents/{}/staging-diff", None),
    ("GET", "/api/v2/agents/{}/production", None),
    ("DELETE", f"{API}/instructions/{{}}", None),
    ("POST", f"{API}/corpora/{{}}", None), ("PUT", f"{API}/corpora/{{}}", {"settings": {}}),
    ("DELETE", f"{API}/corpora/{{}}", None),
    ("POST", f"{API}/tools/{{}}/enable", None), ("DELETE", f"{API}/tools/{{}}/disable", None),
    ("PATCH", f"{API}/tools/{{}}/actions/look", {"a": 1}),
    ("PATCH", f"{API}/tools/web/actions/{{}}", {"a": 1}),
    ("POST", f"{API}/tools/web/actions/{{}}/enable", None),
    ("GET", f"{API}/publishes/{{}}", None), ("GET", f"{API}/publishes/{{}}/diff", None),
]


@pytest.mark.parametrize(("method", "template", "body"), ID_ROUTES)
def test_ids_that_are_paths_or_look_alikes_are_refused(http: httpx.Client, still: None,
                                                       method: str, template: str,
                                                       body: Any) -> None:
    agent_route = template.startswith("/api/v2/agents/{}")
    for ident in HOSTILE_IDS + (AGENT_LOOKALIKES if agent_route else []):
        r = http.request(method, template.format(ident), json=body)
        assert r.status_code == 400, (ident, r.status_code, r.text[:500])
        found = refused(r, 400)
        assert any(word in found["error"]["message"] for word in ("id ", "tag ", "'/'")), \
            (ident, found)


def test_an_encoded_slash_never_reaches_another_route(http: httpx.Client, still: None) -> None:
    """`bot%2Finstructions` decodes to a real route; the id holds a '/', so: 400."""
    refused(http.put("/api/v2/agents/bot%2Finstructions", json=[]), 400, "%2F")
    refused(http.post("/api/v2/agents/bot%2Ftools%2Fweb%2Fenable"), 400, "%2F")
    refused(http.get(f"{API}/publishes/{AGENT}%2Fv1"), 400, "%2F")


# -- markup ------------------------------------------------------------------------------------


def test_markup_in_texts_is_kept_and_comes_back_as_json(served: Server,
                                                        http: httpx.Client) -> None:
    agent = "markup"
    url = f"/api/v2/agents/{agent}"
    assert http.post("/api/v2/agents", json={"id": agent, "name": SCRIPT}).status_code == 201
    writes = [
        http.patch(f"{url}/fields", json={"set": {"description": SCRIPT}, "message": SCRIPT}),
        http.post(f"{url}/instructions", json={"id": "x", "text": SCRIPT}),
        http.post(f"{url}/corpora", json=[{"id": "c", "description": SCRIPT}]),
        http.post(f"{url}/annotates", json={"add": ["<b>"]}),
    ]
    diff = http.get(f"{url}/staging-diff")
    writes.append(http.post(f"{url}/publish", json={"reason": SCRIPT}))
    assert [w.status_code for w in writes] == [200] * 5, [w.text for w in writes]
    assert diff.headers["content-type"] == "application/json"
    assert SCRIPT in json.dumps(diff.json(), ensure_ascii=False)
    for path in ("", "/publishes", "/publishes/1", "/production"):
        r = http.get(url + path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert SCRIPT in json.dumps(r.json(), ensure_ascii=False)
    config = http.get(url).json()
    assert config["name"] == config["description"] == SCRIPT
    assert config["instructions"][-1]["text"] == SCRIPT and config["tags"] == ["<b>"]
    assert http.get(f"{url}/publishes/1").json()["reason"] == SCRIPT
    assert SCRIPT in git(served.repo, "log", "--format=%s", "-8", "staging").splitlines()
    assert git(served.repo, "for-each-ref", "--format=%(contents:subject)",
               f"refs/tags/{agent}/v1") == SCRIPT
    page = http.get(f"/agents/{agent}")
    assert page.headers["content-type"].startswith("text/html")
    assert SCRIPT not in page.text and "&lt;script&gt;" in page.text


@pytest.mark.parametrize(("method", "url", "kwargs"), [
    ("GET", "/api/v2/agents/%3Cscript%3Ealert(1)", {}),
    ("GET", f"{API}/publishes/%3Cscript%3E", {}),
    ("GET", f"{API}/publishes?cursor=%3Cscript%3E", {}),
    ("GET", f"{API}?env=%3Cscript%3E", {}),
    ("GET", "/api/v2/%3Cscript%3E", {}),
    ("PATCH", f"{API}/fields", {"json": {"set": {SCRIPT: 1}}}),
    ("PATCH", f"{API}/fields", {"json": {"set": {"description": 1}, SCRIPT: 1}}),
    ("PUT", f"{API}/access", {"json": {"access": SCRIPT}}),
    ("PUT", f"{API}/access", {"json": {"access": "team"}, "headers": {"if-match": SCRIPT}}),
    ("POST", f"{API}/publish", {"content": b"<html><script>x</script>",
                                "headers": {"content-type": "text/html"}}),
])
def test_errors_reflect_markup_only_as_json(http: httpx.Client, still: None, method: str,
                                           url: str, kwargs: dict[str, Any]) -> None:
    r = http.request(method, url, **kwargs)
    assert 400 <= r.status_code < 500, r.text
    refused(r, r.status_code)
    assert "html" not in r.headers["content-type"]


# -- wrong types, unknown fields, bad parameters ----------------------------------------------

WRONG_TYPES = [
    ("POST", "/api/v2/agents", {"id": 5, "name": "x"}, "id"),
    ("POST", "/api/v2/agents", {"id": "typed", "name": ["x"]}, "name"),
    ("POST", "/api/v2/agents", {"id": "typed", "name": "x", "message": 1}, "message"),
    ("PUT", API, {"name": 3}, "name"),
    ("PUT", API, {"model": "gpt"}, "model"),
    ("PATCH", f"{API}/fields", {"set": ["description"]}, "set"),
    ("PATCH", f"{API}/fields", {"unset": "description"}, "unset"),
    ("PATCH", f"{API}/fields", {"set": {"model.temperature": "hot"}}, "model.temperature"),
    ("PATCH", f"{API}/fields", {"set": {"model.max_tokens": 1.5}}, "model.max_tokens"),
    ("PATCH", f"{API}/fields", {"set": {"tools[web].enabled": "yes"}}, "tools[web].enabled"),
    ("POST", f"{API}/instructions", {"id": "t", "text": 7}, "text"),
    ("POST", f"{API}/instructions", "text", "body"),
    ("PUT", f"{API}/instructions", {"id": "t", "text": "x"}, "body"),
    ("POST", f"{API}/corpora", [{"id": "c", "settings": []}], "settings"),
    ("DELETE", f"{API}/corpora", {"ids": "faq"}, "ids"),
    ("PUT", f"{API}/corpora/faq", {"settings": {"top_k": "many"}}, "top_k"),
    ("POST", f"{API}/sharepoint/folder", {"settings": "https://x"}, "settings"),
    ("PATCH", f"{API}/tools/web/actions/look", [1, 2], "body"),
    ("PATCH", f"{API}/guardrails", {"type": "toxicity", "enabled": "yes"}, "enabled"),
    ("PUT", f"{API}/access", {"access": ["team"]}, "access"),
    ("POST", f"{API}/annotates", {"add": "x"}, "add"),
    ("POST", f"{API}/publish", {"reason": 5}, "reason"),
    ("POST", f"{API}/publish", {"reason": None}, "reason"),
    ("PUT", f"{API}/rollback", {"change_track_id": [1]}, "change_track_id"),
    ("PUT", f"{API}/restore", {"change_track_id": 1.5}, "change_track_id"),
]


@pytest.mark.parametrize(("method", "url", "body", "field"), WRONG_TYPES)
def test_wrong_types_are_422_naming_the_field(http: httpx.Client, still: None, method: str,
                                              url: str, body: Any, field: str) -> None:
    refused(http.request(method, url, json=body), 422, field)


UNKNOWN_FIELDS = [
    ("POST", "/api/v2/agents", {"id": "u", "name": "U", "colour": "red"}, "colour"),
    ("PUT", API, {"nmae": "typo"}, "nmae"),
    ("PATCH", f"{API}/fields", {"sett": {}}, "sett"),
    ("POST", f"{API}/instructions", {"id": "u", "text": "x", "priority": 1}, "priority"),
    ("POST", f"{API}/corpora", [{"id": "u", "kind": "corpus"}], "kind"),
    ("DELETE", f"{API}/corpora", {"ids": ["faq"], "all": True}, "all"),
    ("PUT", f"{API}/corpora/faq", {"settings": {}, "id": "other"}, "id"),
    ("POST", f"{API}/sharepoint/folder", {"settings": {}, "site": "x"}, "site"),
    ("PATCH", f"{API}/guardrails", {"type": "toxicity", "enabled": True, "level": 3}, "level"),
    ("PUT", f"{API}/access", {"access": "team", "who": "all"}, "who"),
    ("POST", f"{API}/annotates", {"add": ["x"], "replace": True}, "replace"),
    ("POST", f"{API}/publish", {"reason": "x", "force": True}, "force"),
    ("PUT", f"{API}/rollback", {"change_track_id": 1, "hard": True}, "hard"),
]


@pytest.mark.parametrize(("method", "url", "body", "field"), UNKNOWN_FIELDS)
def test_unknown_fields_are_422_naming_the_field(http: httpx.Client, still: None,
                                                 method: str, url: str, body: Any,
                                                 field: str) -> None:
    found = refused(http.request(method, url, json=body), 422, field)
    assert any(p["message"] == "unknown field" for p in found["error"]["problems"])


BAD_PARAMETERS = [
    ("/api/v2/publishes?limit=-1", "limit"), (f"{API}/publishes?limit=0", "limit"),
    (f"{API}/publishes?limit=501", "limit"), (f"{API}/publishes?limit=abc", "limit"),
    (f"{API}/publishes?limit=1e3", "limit"), (f"{API}/publishes?limit=" + "9" * 5000, "limit"),
    (f"{API}/publishes?cursor=garbage", "cursor"), (f"{API}/publishes?cursor=bot/v0", "cursor"),
    (f"{API}/publishes?cursor=hr-helpdesk/v1", "cursor"),
    (f"{API}/publishes?cursor=bot/v" + "9" * 500, "cursor"),
    ("/api/v2/publishes?cursor=%3Cscript%3E", "cursor"),
    ("/api/v2/publishes?since=not-a-date", "since"), (f"{API}/publishes?until=2026-13-45", "until"),
    (f"{API}/publishes?since=2026-01-01%00", "since"), ("/api/v2/publishes?until=99999-01-01",
                                                         "until"),
    ("/api/v2/publishes?bogus=1", "bogus"), (f"{API}?env=bogus", "env"), (f"{API}?env=v0", "env"),
    (f"{API}?env=v" + "9" * 50, "env"), (f"{API}/publishes/1/diff?action=undo", "action"),
]


@pytest.mark.parametrize(("url", "name"), BAD_PARAMETERS)
def test_bad_query_parameters_are_400_naming_them(http: httpx.Client, still: None, url: str,
                                                  name: str) -> None:
    refused(http.get(url), 400, name)


# -- values git or the agent files cannot hold --------------------------------------------------


@pytest.mark.parametrize(("method", "url", "body", "named"), [
    ("POST", f"{API}/publish", {"reason": "fine\x00 then the record is lost"}, "reason"),
    ("PATCH", f"{API}/fields", {"set": {"description": "n"}, "message": "a\x00b"}, "message"),
    ("POST", "/api/v2/agents", {"id": "nul", "name": "N", "message": "\x00"}, "message"),
    ("PUT", f"{API}/rollback", {"change_track_id": 1, "reason": "\x00"}, "reason"),
    ("PATCH", f"{API}/fields", {"set": {"model.max_tokens": 2**64}}, "model.max_tokens"),
    ("PATCH", f"{API}/fields", {"set": {"model.parameters": {"n": -(2**63) - 1}}},
     "model.parameters"),
    ("POST", "/api/v2/agents", {"id": "huge", "name": "H", "model": {"name": "m",
                                                                   "max_tokens": 10**30}},
     "model"),
    ("PATCH", f"{API}/tools/web/actions/look", {"n": 2**70}, "config"),
])
def test_values_git_or_the_files_cannot_hold_are_400(http: httpx.Client, still: None,
                                                     method: str, url: str, body: Any,
                                                     named: str) -> None:
    refused(http.request(method, url, json=body), 400, named)


def test_a_publish_is_never_lost_from_history(served: Server, http: httpx.Client) -> None:
    """What a refused reason would have done: a tag whose record git cut off at the NUL,
    live in production and missing from the history."""
    agent = "kept"
    assert http.post("/api/v2/agents", json={"id": agent, "name": "K"}).status_code == 201
    for n in range(2):
        http.patch(f"/api/v2/agents/{agent}/fields",
                   json={"set": {"description": f"d{n}"}}).raise_for_status()
        r = http.post(f"/api/v2/agents/{agent}/publish", json={"reason": f"why \x01{n}"})
        assert r.status_code == 200, r.text
    versions = [e["version"] for e in http.get(f"/api/v2/agents/{agent}/publishes").json()[
        "publishes"]]
    assert versions == [2, 1]
    assert http.get(f"/api/v2/agents/{agent}/production").json()["version"] == 2
    assert subprocess.run(["git", "-C", str(served.repo), "fsck", "--strict"],
                          check=False).returncode == 0
