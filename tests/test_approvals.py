"""Approvals (four eyes): the policy's counts, `approve` and `approvals`, the publish refused
short of approvals by the CLI, the API and the server hook, the record's approvers checked,
and approvals travelling between clones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentstage.errors import InvalidConfig
from agentstage.policy import parse_policy
from conftest import git, hooked_server

AGENT = "billing-support"
ALICE = "Alice <alice@example.com>"
BOB = "Bob <bob@example.com>"
CAROL = "Carol <carol@example.com>"
POLICY = """\
admins: [alice]
editors: ["*"]
publishers:
  "*": [alice, bob, carol]
users:
  alice: alice@example.com
  bob: bob@example.com
  carol: [carol@example.com, carol@work.example.com]
approvals:
  "*": 0
  billing-support: {count}
"""


def set_policy(run: Any, repo: Path, count: int = 1) -> None:
    (repo.parent / "policy.yaml").write_text(POLICY.format(count=count))
    result = run("policy", "set", str(repo.parent / "policy.yaml"), repo=repo)
    assert result.code == 0, result.err


def as_(who: str, run: Any, *args: str, repo: Path) -> Any:
    return run("--author", who, *args, repo=repo)


def edit(run: Any, repo: Path, value: str) -> None:
    result = run("set", AGENT, f"description={value}", "-m", "edit", repo=repo)
    assert result.code == 0, result.err


# -- the policy --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "path", "message"), [
    ("approvals: {Bad_Id: 1}", "approvals", "neither an agent id"),
    ("approvals: {x: -1}", "approvals.x", "greater than or equal to 0"),
    ("approvals: {x: two}", "approvals.x", "valid integer"),
    ("approvals: [1]", "approvals", "valid dictionary"),
])
def test_policy_approvals_problems_are_located(text: str, path: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        parse_policy(f"admins: [a]\n{text}\n".encode())
    problem = caught.value.problems[0]
    assert (problem.line, problem.path) == (2, path)
    assert message in problem.message


# -- the CLI -------------------------------------------------------------------------------


def test_approve_then_edit_voids_it(repo: Path, run: Any) -> None:
    set_policy(run, repo)
    edit(run, repo, "first")
    approved = as_(BOB, run, "approve", AGENT, "-m", "looks right", "--format", "json",
                   repo=repo)
    assert approved.code == 0, approved.err
    tree = git(repo, "rev-parse", f"staging:agents/{AGENT}")
    result = approved.json()
    assert result["staging"]["tree"] == tree and result["created"] is True
    assert result["approval"]["approver"] == "Bob" and result["approval"]["note"] == \
        "looks right"
    ref = f"refs/meta/agentstage-approvals/{AGENT}/{tree}/{result['approval']['id']}"
    assert git(repo, "cat-file", "-t", ref) == "tag"
    assert git(repo, "rev-parse", f"{ref}^{{tree}}") == tree
    again = as_(BOB, run, "approve", AGENT, "--format", "json", repo=repo).json()
    assert again["created"] is False and again["approval"]["id"] == result["approval"]["id"]

    status = run("approvals", AGENT, "--format", "json", repo=repo).json()
    assert status["required"] == 1 and [a["email"] for a in status["approved_by"]] == [
        "bob@example.com"]
    assert status["approvals"][0]["current"] is True

    edit(run, repo, "second")  # a later change voids it
    status = run("approvals", AGENT, "--format", "json", repo=repo).json()
    assert status["approved_by"] == [] and status["approvals"][0]["current"] is False
    text = run("approvals", AGENT, repo=repo)
    assert "0 current approvals, the policy requires 1" in text.out
    assert "Bob <bob@example.com>  void" in text.out
    refused = as_(ALICE, run, "publish", AGENT, "-m", "ship", repo=repo)
    assert refused.code == 7
    assert "needs 1 approval of its staged content" in refused.err
    assert "who may approve: alice, bob, carol" in refused.err
    assert git(repo, "tag", "-l") == ""


def test_the_publishers_own_approval_does_not_count(repo: Path, run: Any) -> None:
    set_policy(run, repo)
    edit(run, repo, "mine")
    # another email of the same person (the policy's users) is the same person
    assert as_("Carol <carol@work.example.com>", run, "approve", AGENT, repo=repo).code == 0
    refused = as_(CAROL, run, "publish", AGENT, "-m", "ship", repo=repo)
    assert refused.code == 7 and "has 0" in refused.err, refused.err
    assert as_(ALICE, run, "approve", AGENT, repo=repo).code == 0
    done = as_(ALICE, run, "publish", AGENT, "-m", "ship", "--format", "json", repo=repo)
    assert done.code == 0, done.err
    listed = done.json()["approvals"]  # Alice's own is not listed: it did not count
    assert [(a["approver"], a["email"]) for a in listed] == [
        ("Carol", "carol@work.example.com")]
    entry = run("history", AGENT, "--format", "json", repo=repo).json()[0]
    assert entry["verified"] is True, entry["problems"]
    assert [a["email"] for a in entry["approvals"]] == ["carol@work.example.com"]


def test_two_approvers_for_a_count_of_two(repo: Path, run: Any) -> None:
    set_policy(run, repo, count=2)
    edit(run, repo, "two")
    assert as_(BOB, run, "approve", AGENT, repo=repo).code == 0
    assert as_(BOB, run, "approve", AGENT, repo=repo).code == 0  # once per person
    refused = as_(ALICE, run, "publish", AGENT, "-m", "ship", repo=repo)
    assert refused.code == 7 and "needs 2 approvals" in refused.err and "has 1 (Bob)" in \
        refused.err
    assert as_(CAROL, run, "approve", AGENT, repo=repo).code == 0
    done = as_(ALICE, run, "publish", AGENT, "-m", "ship", "--format", "json", repo=repo)
    assert done.code == 0, done.err
    assert sorted(a["approver"] for a in done.json()["approvals"]) == ["Bob", "Carol"]
    record = git(repo, "cat-file", "-p", f"{AGENT}/v1").split(
        "agentstage-publish-record: 1\n")[1]
    assert sorted(a["email"] for a in json.loads(record)["approvals"]) == [
        "bob@example.com", "carol@example.com"]
    assert run("doctor", "--format", "json", repo=repo).code == 0


def test_no_policy_or_a_count_of_zero_needs_none(repo: Path, run: Any) -> None:
    edit(run, repo, "free")
    assert run("publish", AGENT, "-m", "ship", repo=repo).code == 0
    set_policy(run, repo, count=0)
    edit(run, repo, "still free")
    assert run("publish", AGENT, "-m", "ship", repo=repo).code == 0


def test_a_forged_record_does_not_verify(repo: Path, run: Any) -> None:
    """A record that lists an approval of other content is marked in history."""
    set_policy(run, repo)
    edit(run, repo, "old")
    old = as_(BOB, run, "approve", AGENT, "--format", "json", repo=repo).json()["approval"]
    edit(run, repo, "new")
    assert as_(BOB, run, "approve", AGENT, repo=repo).code == 0
    assert as_(ALICE, run, "publish", AGENT, "-m", "ship", repo=repo).code == 0
    from agentstage.store import Store
    from agentstage.verify import record_problems

    store = Store.open(repo)
    info = store.tag(f"{AGENT}/v1")
    assert info is not None
    forged = {"approver": "Bob", "email": "bob@example.com", "time": old["time"],
              "id": old["id"]}
    from agentstage.publishing import read_record

    record = {**read_record(info)[1], "approvals": [forged]}
    problems = record_problems(store, info, record)
    assert any("not an approval of the published" in p for p in problems), problems


def test_approve_refuses_bad_input(repo: Path, run: Any) -> None:
    assert run("approve", "Bad_Id", repo=repo).code == 2
    assert run("approve", "no-such-agent", repo=repo).code == 6
    assert run("approve", AGENT, "-m", "a\x1bb", repo=repo).code == 2
    assert run("approvals", "no-such-agent", repo=repo).code == 6


# -- the server hook, over real pushes, and approvals between clones ---------------------


@pytest.fixture
def team(tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A hooked bare server with the policy (one approval for billing-support), and two
    clones of it: alice's and bob's."""
    _source, server = hooked_server(tmp_path, run)
    set_policy(run, server)
    for name in ("alice", "bob"):
        git(tmp_path, "clone", "-q", str(server), str(tmp_path / name))
    monkeypatch.setenv("REMOTE_USER", "alice")
    return {"server": server, "alice": tmp_path / "alice", "bob": tmp_path / "bob"}


def test_approvals_travel_between_clones_and_the_hook_checks_them(
        team: dict[str, Path], run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, server = team["alice"], team["bob"], team["server"]
    edit(run, alice, "reviewed by bob")
    git(alice, "push", "-q", "origin", "staging")
    # without an approval the server refuses the publish, and the clone is put back
    refused = as_(ALICE, run, "publish", AGENT, "-m", "ship", repo=alice)
    assert refused.code == 7, refused.err
    assert "needs 1 approval of the published content" in refused.err
    assert "who may approve: alice, bob, carol" in refused.err
    assert git(alice, "tag", "-l") == "" and git(server, "tag", "-l") == ""

    monkeypatch.setenv("REMOTE_USER", "bob")
    git(bob, "pull", "-q", "--ff-only")
    approved = as_(BOB, run, "approve", AGENT, "-m", "ok", "--format", "json", repo=bob)
    assert approved.code == 0, approved.err
    assert approved.json()["pushed"] == "origin"
    ref = approved.json()["ref"]
    assert git(server, "rev-parse", ref) == approved.json()["approval"]["id"]

    monkeypatch.setenv("REMOTE_USER", "alice")
    done = as_(ALICE, run, "publish", AGENT, "-m", "ship", "--format", "json", repo=alice)
    assert done.code == 0, done.err
    assert [a["approver"] for a in done.json()["approvals"]] == ["Bob"]
    assert git(alice, "rev-parse", ref) == approved.json()["approval"]["id"]  # fetched
    status = run("approvals", AGENT, "--format", "json", repo=alice).json()
    assert status["approved_by"] == [{"approver": "Bob", "email": "bob@example.com"}]
    assert git(server, "rev-parse", f"production/{AGENT}") == git(alice, "rev-parse",
                                                                   "staging")


def test_the_hook_refuses_forged_moved_and_self_approvals(
        team: dict[str, Path], run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, server = team["alice"], team["server"]
    edit(run, alice, "alice alone")
    git(alice, "push", "-q", "origin", "staging")
    # alice writes an approval in bob's name: the server refuses it (users: bob's email)
    forged = as_(BOB, run, "approve", AGENT, "--format", "json", repo=alice)
    assert forged.code == 7, forged.err
    assert "only approvers push their own approvals" in forged.err
    assert git(alice, "for-each-ref", "refs/meta/agentstage-approvals/") == ""
    # her own approval is taken, and does not count toward her publish
    assert as_(ALICE, run, "approve", AGENT, repo=alice).code == 0
    refused = as_(ALICE, run, "publish", AGENT, "-m", "ship", repo=alice)
    assert refused.code == 7 and "and has 0" in refused.err, refused.err
    # a publish record listing bob's approval kept only in the clone, pushed by hand
    assert as_(BOB, run, "approve", AGENT, "--no-push", repo=alice).code == 0
    assert as_(ALICE, run, "publish", AGENT, "-m", "ship", "--no-push", repo=alice).code == 0
    refs = git(alice, "for-each-ref", "--format=%(refname)",
               "refs/meta/agentstage-approvals/").split()
    push = ["push", "--atomic", "origin", f"production/{AGENT}", f"refs/tags/{AGENT}/v1"]
    out = _push(alice, *push)
    assert out.returncode != 0 and "is not on the server" in out.stderr, out.stderr
    out = _push(alice, *push, *refs)
    assert out.returncode != 0 and "only approvers push their own approvals" in out.stderr
    # approval refs are never moved or deleted, and hold only approvals
    mine = next(r for r in refs if git(alice, "cat-file", "-p", r).find("alice@") > 0)
    out = _push(alice, f":{mine}")
    assert out.returncode != 0 and "never deleted" in out.stderr
    out = _push(alice, f"staging:refs/meta/agentstage-approvals/{AGENT}/x")
    assert out.returncode != 0 and "holds only approvals" in out.stderr
    assert git(server, "tag", "-l") == ""


def _push(repo: Path, *args: str) -> Any:
    import subprocess

    return subprocess.run(["git", "-C", str(repo), "push", "origin", *args] if args[0] != "push"
                          else ["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)


# -- the API and the review page, on a real `agentstage serve` ---------------------------


def test_api_and_page_approve_and_refuse(tmp_path: Path) -> None:
    import re

    from test_serve import Server, cli, error, refs, sample_repo, server_env

    repo = sample_repo(tmp_path)
    env = server_env(tmp_path / "home")
    (tmp_path / "policy.yaml").write_text(POLICY.format(count=1).replace(
        'editors: ["*"]', 'editors: ["*"]\n# ed edits, and may neither publish nor approve'))
    assert cli(repo, env, "policy", "set", str(tmp_path / "policy.yaml")).returncode == 0
    server = Server(repo, env, "--auth", "header:X-Forwarded-User")
    url = f"/api/v2/agents/{AGENT}"

    def who(name: str) -> dict[str, str]:
        return {"x-forwarded-user": name}

    try:
        with server.client() as http:
            r = http.patch(f"{url}/fields", json={"set": {"description": "via the API"}},
                           headers=who("alice"))
            assert r.status_code == 200, r.text
            before = refs(repo)
            r = http.post(f"{url}/approvals", json={}, headers=who("ed"))
            assert "ed may not approve" in error(r, 403, "policy")["error"]["message"]
            r = http.post(f"{url}/publish", json={"reason": "ship"}, headers=who("alice"))
            found = error(r, 403, "policy")["error"]
            assert "needs 1 approval" in found["message"]
            assert "who may approve: alice, bob, carol" in found["hint"]
            r = http.post(f"{url}/approvals", json={"note": 1}, headers=who("bob"))
            assert r.status_code in (400, 422)
            assert refs(repo) == before  # nothing written by the refusals

            r = http.post(f"{url}/approvals", json={"note": "fine by me"}, headers=who("bob"))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["created"] is True and body["approval"]["email"] == "bob@example.com"
            assert body["approved_by"] == [{"approver": "bob", "email": "bob@example.com"}]
            listed = http.get(f"{url}/approvals", headers=who("ed")).json()
            assert listed["required"] == 1 and listed["approvals"][0]["current"] is True
            assert listed["approvals"][0]["note"] == "fine by me"
            r = http.post(f"{url}/publish", json={"reason": "ship"}, headers=who("bob"))
            assert "has 0" in error(r, 403, "policy")["error"]["message"]  # not his own
            r = http.post(f"{url}/publish", json={"reason": "ship"}, headers=who("alice"))
            assert r.status_code == 200, r.text
            assert [a["email"] for a in r.json()["approvals"]] == ["bob@example.com"]
            entry = http.get(f"{url}/publishes/1", headers=who("ed")).json()
            assert entry["verified"] is True and entry["approvals"][0]["approver"] == "bob"

            # the page: the approve form approves what it showed
            r = http.patch(f"{url}/fields", json={"set": {"description": "via the page"}},
                           headers=who("alice"))
            assert r.status_code == 200, r.text
            page = http.get(f"/agents/{AGENT}", headers=who("carol")).text
            assert "Approve this content" in page and "void (earlier content)" in page
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            etag = re.search(r'action="/agents/[^"]+/approve">.*?name="etag" value="([^"]+)"',
                             page, re.S)
            assert csrf is not None and etag is not None
            viewer = http.get(f"/agents/{AGENT}", headers=who("ed")).text
            assert "Approve this content" not in viewer and "Approvers are those" in viewer
            form = {"csrf": csrf[1], "etag": etag[1].replace("&#34;", '"'),
                    "note": "<b>ok</b>"}
            r = http.post(f"/agents/{AGENT}/approve", data=form, headers=who("carol"))
            assert r.status_code == 200, r.text
            assert "You approved the staged content" in r.text and "&lt;b&gt;ok" in r.text
            r = http.post(f"/agents/{AGENT}/approve", data={**form, "csrf": "x"},
                          headers=who("carol"))
            assert r.status_code == 403
            listed = http.get(f"{url}/approvals", headers=who("ed")).json()
            assert [a["approver"] for a in listed["approved_by"]] == ["carol"]
            # a change after the page was shown: refused, nothing approved
            r = http.patch(f"{url}/fields", json={"set": {"description": "changed again"}},
                           headers=who("alice"))
            assert r.status_code == 200, r.text
            r = http.post(f"/agents/{AGENT}/approve", data=form, headers=who("carol"))
            assert r.status_code == 412 and "nothing was approved" in r.text
            assert http.get(f"{url}/approvals", headers=who("ed")).json()["approved_by"] == []
    finally:
        assert server.stop() == 0, server.stderr
