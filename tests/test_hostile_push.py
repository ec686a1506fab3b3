"""The hostile-push corpus: every way a pusher got past the server hook (issue 9), built as
a real `git push` from a clone to a real bare server with `hooks install --server`, with
and without --atomic. Each must end in a clean refusal that names the ref and the rule,
leave every ref on the server as it was, never be an internal error, and end in bounded
time.

The server has git's default `receive.fsckObjects=false`, as many hosts do: the hook is
the last line. Its policy: admins [alice], editors ["*"], publishers {"*": [alice]}; the
server already holds the first publish of billing-support (v1)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import commit_all, copy_repo, git, hooked_server, tree_state

AGENT = "billing-support"
AGENT_YAML = Path("agents") / AGENT / "agent.yaml"
PROD = f"refs/heads/production/{AGENT}"
POLICY = 'admins: [alice]\neditors: ["*"]\npublishers:\n  "*": [alice]\n'
MARKER = "agentstage-publish-record: 1"
TAGGER = b"Test Author <test@example.com> 1764460800 +0000"
TIMEOUT = 120  # seconds: every push ends, refused or not, well within this


_TEMPLATE: dict[str, Path] = {}


def _template(run: Any, factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built once: the hooked server with its policy and billing-support/v1, and a clone."""
    if not _TEMPLATE:
        base = factory.mktemp("hostile-push-template")
        _source, server = hooked_server(base, run)
        git(server, "config", "receive.fsckObjects", "false")
        git(server, "config", "transfer.fsckObjects", "false")
        clone = base / "clone"
        git(base, "clone", "-q", str(server), str(clone))
        (base / "policy.yaml").write_text(POLICY)
        assert run("policy", "set", str(base / "policy.yaml"), repo=clone).code == 0
        assert push(clone, "refs/meta/agentstage").returncode == 0
        edit(clone, "temperature: 0.2", "temperature: 0.3")
        assert push(clone, "staging").returncode == 0
        publish(run, clone)
        done = push(clone, PROD, f"refs/tags/{AGENT}/v1")
        assert done.returncode == 0, done.stderr
        _TEMPLATE.update(server=server, clone=clone)
    return _TEMPLATE


@pytest.fixture
def server(run: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repo(_template(run, tmp_path_factory)["server"], tmp_path / "server.git")


@pytest.fixture
def clone(server: Path, tmp_path: Path) -> Path:
    return copy_repo(_TEMPLATE["clone"], tmp_path / "clone", origin=server)


def push(repo: Path, *refspecs: str, user: str | None = "alice",
         atomic: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REMOTE_USER"}
    if user is not None:
        env["REMOTE_USER"] = user
    return subprocess.run(["git", "-C", str(repo), "push", "--porcelain",
                           *(["--atomic"] if atomic else []), "origin", *refspecs],
                          capture_output=True, text=True, check=False, env=env,
                          timeout=TIMEOUT)


def refused(done: subprocess.CompletedProcess[str], *texts: str) -> None:
    """Refused by the hook, cleanly, with each of *texts* in what the pusher reads."""
    assert done.returncode != 0, done.stderr
    assert "pre-receive hook declined" in done.stdout + done.stderr, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    for text in texts:
        assert text in done.stderr, done.stderr


def edit(repo: Path, old: str, new: str) -> str:
    path = repo / AGENT_YAML
    path.write_text(path.read_text().replace(old, new, 1))
    return commit_all(repo, f"{old} -> {new}")


def publish(run: Any, clone: Path, reason: str = "go live") -> None:
    result = run("publish", AGENT, "-m", reason, "--no-push", repo=clone)
    assert result.code == 0, result.err


def staged(clone: Path, temperature: str = "0.4") -> str:
    """A valid edit of billing-support pushed to the server's staging; its commit."""
    commit = edit(clone, "temperature: 0.3", f"temperature: {temperature}")
    done = push(clone, "staging")
    assert done.returncode == 0, done.stderr
    return commit


def obj(repo: Path, kind: str, data: bytes) -> str:
    """Write any object, as an attacker would: no checks (`--literally`)."""
    return subprocess.run(["git", "-C", str(repo), "hash-object", "-t", kind, "--literally",
                           "-w", "--stdin"], input=data, capture_output=True,
                          check=True).stdout.decode().strip()


def record(number: int, commit: str, **override: Any) -> str:
    """The message of a publish tag, with the record agentstage writes (fields overridable)."""
    fields: dict[str, Any] = {
        "agent": AGENT, "version": number,
        "previous": f"{AGENT}/v{number - 1}" if number > 1 else None,
        "staging_commit": commit, "production_before": None, "reverts": [], "restores": [],
        "changes": []}
    fields.update(override)
    return f"go live\n\n{MARKER}\n{json.dumps(fields)}\n"


def tag(repo: Path, name: str, target: str, message: str | bytes, kind: str = "commit",
        tagger: bytes = TAGGER) -> str:
    """A tag object written byte by byte, and refs/tags/<name> in *repo* pointing at it."""
    body = message if isinstance(message, bytes) else message.encode()
    data = (f"object {target}\ntype {kind}\ntag {name}\n".encode() + b"tagger " + tagger
            + b"\n\n" + body)
    oid = obj(repo, "tag", data)
    git(repo, "update-ref", f"refs/tags/{name}", oid)
    return oid


def publish_push(clone: Path, *tags: int) -> list[str]:
    return [f"{git(clone, 'rev-parse', 'staging')}:{PROD}",
            *(f"refs/tags/{AGENT}/v{n}" for n in tags)]


ATOMIC = pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "not-atomic"])


# -- 1. names that would block a protected ref in git's ref storage ---------------------------


BLOCKERS = [
    f"refs/tags/{AGENT}/v2/x",  # blocks the next publish tag
    f"refs/tags/{AGENT}/v1/x",
    f"refs/tags/{AGENT}",  # an agent's name as a tag blocks all its publish tags
    "refs/tags/hr-helpdesk",
    "refs/tags/not-yet-an-agent",  # an agent made later would never publish
    f"refs/tags/{AGENT}/latest",  # the agent's tag namespace holds publish tags only
    f"refs/tags/{AGENT}/v02",
    f"refs/tags/{AGENT}/v0",
    "refs/heads/production",  # blocks every production ref
    f"refs/heads/production/{AGENT}/x",
    "refs/heads/production/Not_An_Agent",
    "refs/heads/staging/x",
    "refs/meta/agentstage/x",  # blocks the policy ref
]


@ATOMIC
@pytest.mark.parametrize("ref", BLOCKERS)
def test_a_name_that_would_block_a_protected_ref_is_refused(ref: str, atomic: bool,
                                                            clone: Path, server: Path) -> None:
    before = tree_state(server)
    refused(push(clone, f"HEAD:{ref}", user="mallory", atomic=atomic), f"error: {ref}: refused:")
    assert tree_state(server) == before


@pytest.mark.parametrize("ref", ["refs/tags/release-1.0", "refs/tags/Release-1",
                                 "refs/heads/feature/x", "refs/tags/Other/v1",
                                 "refs/heads/productions", "refs/meta/other"])
def test_names_that_block_nothing_stay_allowed(ref: str, clone: Path, server: Path) -> None:
    done = push(clone, f"HEAD:{ref}", user="mallory")
    assert done.returncode == 0, done.stderr


@ATOMIC
def test_a_blocker_left_on_the_server_refuses_the_publish_it_blocks(
        run: Any, atomic: bool, clone: Path, server: Path) -> None:
    """A blocker from before the rule: git would create production and then fail on the
    tag (production without its tag) in a push without --atomic. The hook refuses both
    and names the blocker; the blocker may be deleted."""
    staged(clone)
    publish(run, clone)
    blocker = f"refs/tags/{AGENT}/v2/x"
    git(server, "update-ref", blocker, git(server, "rev-parse", "staging"))
    before = tree_state(server)
    done = push(clone, *publish_push(clone, 2), atomic=atomic)
    refused(done, f"error: {PROD}: its publish tag refs/tags/{AGENT}/v2 is refused: cannot be "
            f"created: the server has {blocker}",
            f"error: refs/tags/{AGENT}/v2: cannot be created: the server has {blocker}")
    assert tree_state(server) == before
    deleted = push(clone, f":{blocker}", user="mallory")
    assert deleted.returncode == 0, deleted.stderr
    assert push(clone, *publish_push(clone, 2), atomic=atomic).returncode == 0


# -- 2 and 7. all or nothing, every tag checked with its record -------------------------------


def two_publishes(run: Any, clone: Path) -> tuple[str, str]:
    """v2 and v3 published in the clone, staging pushed; their commits."""
    v2 = staged(clone, "0.4")
    publish(run, clone, "second")
    v3 = edit(clone, "temperature: 0.4", "temperature: 0.5")
    assert push(clone, "staging").returncode == 0
    publish(run, clone, "third")
    return v2, v3


@ATOMIC
def test_two_valid_publishes_in_one_push_are_accepted(run: Any, atomic: bool, clone: Path,
                                                      server: Path) -> None:
    _v2, v3 = two_publishes(run, clone)
    done = push(clone, *publish_push(clone, 2, 3), atomic=atomic)
    assert done.returncode == 0, done.stderr
    assert git(server, "rev-parse", PROD) == v3
    assert [e["version"] for e in run("history", AGENT, "--format", "json",
                                       repo=server).json()] == [3, 2, 1]


@ATOMIC
@pytest.mark.parametrize("kind", ["blob", "tree", "tag"])
def test_an_earlier_tag_of_the_push_is_checked_too(run: Any, kind: str, atomic: bool,
                                                   clone: Path, server: Path) -> None:
    v2, _v3 = two_publishes(run, clone)
    target = {"blob": git(clone, "rev-parse", f"{v2}:{AGENT_YAML}"),
              "tree": git(clone, "rev-parse", f"{v2}^{{tree}}"),
              "tag": git(clone, "rev-parse", f"refs/tags/{AGENT}/v1")}[kind]
    tag(clone, f"{AGENT}/v2", target, record(2, target), kind)
    before = tree_state(server)
    refused(push(clone, *publish_push(clone, 2, 3), atomic=atomic),
            f"error: refs/tags/{AGENT}/v2: a publish tag points at a commit, and this one "
            f"points at a {kind}", f"error: {PROD}: its publish tag refs/tags/{AGENT}/v2 is "
            "refused")
    assert tree_state(server) == before


@ATOMIC
def test_publishes_of_one_push_only_move_forward(run: Any, atomic: bool, clone: Path,
                                                 server: Path) -> None:
    v2, v3 = two_publishes(run, clone)
    beside = git(clone, "commit-tree", f"{v2}^{{tree}}", "-p", f"{v2}~1", "-m", "beside")
    git(clone, "update-ref", "refs/heads/beside", beside)
    tag(clone, f"{AGENT}/v2", beside, record(2, beside))
    tag(clone, f"{AGENT}/v3", v3, record(3, v3))
    before = tree_state(server)
    refused(push(clone, "beside", *publish_push(clone, 2, 3), atomic=atomic),
            f"error: refs/tags/{AGENT}/v2: points at {beside[:12]}, which is not an ancestor "
            f"of {AGENT}/v3's")
    assert tree_state(server) == before


@ATOMIC
def test_a_publish_tag_pushed_alone_or_production_alone_is_refused(
        run: Any, atomic: bool, clone: Path, server: Path) -> None:
    staged(clone)
    publish(run, clone)
    before = tree_state(server)
    refused(push(clone, f"refs/tags/{AGENT}/v2", atomic=atomic),
            "a publish tag goes with its production ref")
    refused(push(clone, PROD, atomic=atomic), "production moves only with its publish record")
    assert tree_state(server) == before


# -- 8. a publish tag carries a publish record that verifies ---------------------------------


BAD_RECORDS: dict[str, Any] = {
    "no record": lambda c: "just a tag\n",
    "not JSON": lambda c: f"why\n\n{MARKER}\n{{not json\n",
    "a JSON list": lambda c: f"why\n\n{MARKER}\n[1, 2]\n",
    "another agent": lambda c: record(2, c, agent="hr-helpdesk"),
    "another version": lambda c: record(2, c, version=3),
    "version true": lambda c: record(2, c, version=True),
    "wrong previous": lambda c: record(2, c, previous=f"{AGENT}/v7"),
    "another commit": lambda c: record(2, c, staging_commit="0" * 40),
    "changes not a list": lambda c: record(2, c, changes="everything"),
    "a change that never happened": lambda c: record(2, c, changes=[
        {"section": "guardrails", "path": "guardrails[pii-redaction].enabled",
         "change": "modified", "production": True, "staging": False}]),
    "nested deep": lambda c: f"why\n\n{MARKER}\n" + "[" * 100_000 + "]" * 100_000 + "\n",
    "huge": lambda c: record(2, c, changes=[{"path": "x" * 1000}] * 400),
    "a number of 5000 digits": lambda c: f"why\n\n{MARKER}\n{{\"version\": {'9' * 5000}}}\n",
}


@ATOMIC
@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_publish_tag_whose_record_does_not_verify_is_refused(
        run: Any, case: str, atomic: bool, clone: Path, server: Path) -> None:
    commit = staged(clone)
    git(clone, "update-ref", PROD, commit)
    tag(clone, f"{AGENT}/v2", commit, BAD_RECORDS[case](commit))
    before = tree_state(server)
    refused(push(clone, *publish_push(clone, 2), atomic=atomic),
            f"error: refs/tags/{AGENT}/v2: ", f"error: {PROD}: its publish tag")
    assert tree_state(server) == before
    assert run("history", AGENT, repo=server).code == 0


def test_a_plain_annotated_tag_is_not_a_publish(clone: Path, server: Path) -> None:
    commit = staged(clone)
    git(clone, "tag", "-a", "-m", "x", f"{AGENT}/v2", commit)
    before = tree_state(server)
    refused(push(clone, *publish_push(clone, 2)),
            f"error: refs/tags/{AGENT}/v2: tag has no agentstage publish record")
    assert tree_state(server) == before


# -- 6. symbolic refs on the server -----------------------------------------------------------


@ATOMIC
def test_a_push_through_a_symbolic_ref_to_staging_is_checked_as_staging(
        atomic: bool, clone: Path, server: Path) -> None:
    git(server, "symbolic-ref", "refs/heads/main", "refs/heads/staging")
    edit(clone, "temperature: 0.3", "temperature: 7")
    before = tree_state(server)
    refused(push(clone, "HEAD:refs/heads/main", atomic=atomic),
            "error: refs/heads/main (a symbolic ref to refs/heads/staging): invalid agent "
            "configuration", "model.temperature")
    assert tree_state(server) == before


@ATOMIC
def test_a_push_through_a_symbolic_ref_to_production_needs_a_publish(
        atomic: bool, clone: Path, server: Path) -> None:
    git(server, "symbolic-ref", "refs/heads/live", PROD)
    staged(clone)
    before = tree_state(server)
    refused(push(clone, "HEAD:refs/heads/live", user="mallory", atomic=atomic),
            f"error: refs/heads/live (a symbolic ref to {PROD}): production moves only with "
            "its publish record")
    assert tree_state(server) == before


def test_a_symbolic_ref_to_a_production_not_yet_there_is_resolved(
        clone: Path, server: Path) -> None:
    git(server, "symbolic-ref", "refs/heads/live", "refs/heads/production/hr-helpdesk")
    before = tree_state(server)
    refused(push(clone, "HEAD:refs/heads/live", user="mallory"),
            "error: refs/heads/live (a symbolic ref to refs/heads/production/hr-helpdesk): "
            "production moves only with its publish record")
    assert tree_state(server) == before


# -- 9. production only at a commit the server's staging has -----------------------------------


@ATOMIC
def test_production_at_a_commit_staging_never_had_is_refused(
        run: Any, atomic: bool, clone: Path, server: Path) -> None:
    local = edit(clone, "temperature: 0.3", "temperature: 0.4")  # never pushed
    publish(run, clone)
    before = tree_state(server)
    refused(push(clone, PROD, f"refs/tags/{AGENT}/v2", atomic=atomic),
            f"error: {PROD}: production moves only to a commit staging has, and {local[:12]} "
            "is not on the server's staging")
    assert tree_state(server) == before
    done = push(clone, "staging", PROD, f"refs/tags/{AGENT}/v2", atomic=atomic)
    assert done.returncode == 0, done.stderr  # with staging in the same push it is


# -- 11. inputs that crashed the hook (exit 70) -----------------------------------------------


@ATOMIC
def test_a_publish_tag_with_thousands_of_digits_is_refused(atomic: bool, clone: Path,
                                                           server: Path) -> None:
    commit = staged(clone)
    digits = "9" * 5000
    oid = obj(clone, "tag", f"object {commit}\ntype commit\ntag {AGENT}/v{digits}\n".encode()
              + b"tagger " + TAGGER + b"\n\n" + record(2, commit).encode())
    before = tree_state(server)
    refused(push(clone, f"{commit}:{PROD}", f"{oid}:refs/tags/{AGENT}/v{digits}",
                 atomic=atomic), "not the next version: the next publish of "
            f"{AGENT} is v2")
    assert tree_state(server) == before


@pytest.mark.parametrize("where", ["tagger", "message", "name"])
def test_a_publish_tag_that_is_not_utf8_is_refused(where: str, clone: Path,
                                                   server: Path) -> None:
    commit = staged(clone)
    message = record(2, commit).encode()
    tagger = TAGGER
    if where == "tagger":
        tagger = b"M\xe9llory <m\xffx@example.com> 1764460800 +0000"
    elif where == "message":
        message = b"caf\xe9\n\n" + message.split(b"\n\n", 1)[1]
    name = f"{AGENT}/v2".encode() + (b"\xff" if where == "name" else b"")
    oid = obj(clone, "tag", b"object " + commit.encode() + b"\ntype commit\ntag " + name
              + b"\ntagger " + tagger + b"\n\n" + message)
    before = tree_state(server)
    refused(push(clone, f"{commit}:{PROD}", f"{oid}:refs/tags/{AGENT}/v2"),
            f"error: refs/tags/{AGENT}/v2: ")
    assert tree_state(server) == before


def test_a_publish_tag_from_the_far_future_is_refused(clone: Path, server: Path) -> None:
    commit = staged(clone)
    tag(clone, f"{AGENT}/v2", commit, record(2, commit),
        tagger=b"Test Author <test@example.com> 99999999999999999 +0000")
    before = tree_state(server)
    refused(push(clone, *publish_push(clone, 2)), f"error: refs/tags/{AGENT}/v2: ")
    assert tree_state(server) == before


def policy_commit(clone: Path, mode: str, oid: str) -> str:
    """A commit on the clone's policy ref whose tree holds policy.yaml as *mode* -> *oid*."""
    tree = obj(clone, "tree", mode.encode() + b" policy.yaml\0" + bytes.fromhex(oid))
    commit = git(clone, "commit-tree", tree, "-p", "refs/meta/agentstage", "-m", "hostile")
    git(clone, "update-ref", "refs/meta/agentstage", commit)
    return commit


@pytest.mark.parametrize("mode", ["160000", "120000", "40000"])
def test_a_policy_that_is_not_a_file_is_refused(mode: str, clone: Path, server: Path) -> None:
    target = {"160000": "1" * 40,  # a submodule commit that does not exist
              "120000": obj(clone, "blob", b"/etc/passwd"),
              "40000": git(clone, "rev-parse", "staging^{tree}")}[mode]
    policy_commit(clone, mode, target)
    before = tree_state(server)
    refused(push(clone, "refs/meta/agentstage"), "error: refs/meta/agentstage: ")
    assert tree_state(server) == before


# -- 12. a policy keeps at least one admin ----------------------------------------------------


def test_a_policy_without_admins_pushed_as_a_plain_commit_is_refused(
        clone: Path, server: Path) -> None:
    policy_commit(clone, "100644", obj(clone, "blob", b'admins: []\neditors: ["*"]\n'))
    before = tree_state(server)
    refused(push(clone, "refs/meta/agentstage"),
            "error: refs/meta/agentstage: a policy without admins could never be changed again")
    assert tree_state(server) == before


# -- 14. the server and validate agree ---------------------------------------------------------


@pytest.mark.parametrize("name,data,problem", [
    ("notes.md", b"#" * (2 * 1024 * 1024), "over the cap of 1048576"),
    (".hidden", b"x", "hidden files are not allowed in an agent"),
    (".notes.md", b"x", "hidden files are not allowed in an agent"),
])
def test_server_and_validate_agree_on_an_agent_directory(
        run: Any, name: str, data: bytes, problem: str, clone: Path, server: Path) -> None:
    (clone / "agents" / AGENT / name).write_bytes(data)
    on_disk = run("validate", repo=clone)
    assert on_disk.code == 4
    assert f"agents/{AGENT}/{name}" in on_disk.out + on_disk.err
    assert problem in on_disk.out + on_disk.err
    commit_all(clone, f"add {name}")
    at_ref = run("validate", "--ref", "staging", repo=clone)
    assert at_ref.code == 4 and problem in at_ref.out + at_ref.err
    before = tree_state(server)
    refused(push(clone, "staging"), f"agents/{AGENT}/{name}: ", problem)
    assert tree_state(server) == before


# -- what else a pusher might try ---------------------------------------------------------------


def test_production_pointing_at_a_tag_object_is_refused(run: Any, clone: Path,
                                                        server: Path) -> None:
    staged(clone)
    publish(run, clone)
    before = tree_state(server)
    refused(push(clone, f"refs/tags/{AGENT}/v2:{PROD}", f"refs/tags/{AGENT}/v2"),
            f"error: {PROD}: production/{AGENT} must point at a commit")
    assert tree_state(server) == before


def test_a_tag_without_a_tagger_is_refused(clone: Path, server: Path) -> None:
    commit = staged(clone)
    oid = obj(clone, "tag", f"object {commit}\ntype commit\ntag {AGENT}/v2\n\n".encode()
              + record(2, commit).encode())
    before = tree_state(server)
    refused(push(clone, f"{commit}:{PROD}", f"{oid}:refs/tags/{AGENT}/v2"),
            f"error: refs/tags/{AGENT}/v2: ")
    assert tree_state(server) == before


@ATOMIC
def test_an_old_publish_tag_is_never_moved_or_deleted(atomic: bool, clone: Path,
                                                      server: Path) -> None:
    commit = staged(clone)
    tag(clone, f"{AGENT}/v1", commit, record(1, commit))
    before = tree_state(server)
    refused(push(clone, f"+refs/tags/{AGENT}/v1", atomic=atomic), "never moved")
    refused(push(clone, f":refs/tags/{AGENT}/v1", atomic=atomic), "never deleted")
    assert tree_state(server) == before


@pytest.mark.parametrize("kind", ["blob", "tree"])
def test_a_publish_tag_of_a_blob_already_on_a_server_is_an_error_not_a_crash(
        run: Any, kind: str, bare: Path) -> None:
    """What a server without the hook may already hold: every command says what is wrong
    (history may skip it with a warning), none crashes."""
    staging = git(bare, "rev-parse", "staging")
    target = git(bare, "rev-parse", f"staging:{AGENT_YAML}" if kind == "blob"
                 else "staging^{tree}")
    tag(bare, f"{AGENT}/v1", target, record(1, staging), kind)
    git(bare, "update-ref", PROD, staging)
    for args in (("show", AGENT, "--env", "v1"), ("history", AGENT), ("history",),
                 ("agents",), ("diff", AGENT)):
        done = run(*args, repo=bare)
        assert done.code in (0, 4) and "internal error" not in done.err, (args, done.err)
    shown = run("show", AGENT, "--env", "v1", repo=bare)
    assert f"error: refs/tags/{AGENT}/v1: points at a {kind}, not a commit" in shown.err


@ATOMIC
def test_a_later_tag_of_the_push_that_is_no_commit_is_refused(run: Any, atomic: bool,
                                                              clone: Path, server: Path) -> None:
    _v2, v3 = two_publishes(run, clone)
    blob = git(clone, "rev-parse", f"{v3}:{AGENT_YAML}")
    tag(clone, f"{AGENT}/v3", blob, record(3, blob), "blob")
    before = tree_state(server)
    refused(push(clone, *publish_push(clone, 2, 3), atomic=atomic),
            f"error: refs/tags/{AGENT}/v3: a publish tag points at a commit")
    assert tree_state(server) == before


def test_staging_pushed_as_a_blob_beside_a_publish_is_refused(run: Any, clone: Path,
                                                              server: Path) -> None:
    edit(clone, "temperature: 0.3", "temperature: 0.4")
    publish(run, clone)
    blob = obj(clone, "blob", b"not a commit")
    before = tree_state(server)
    refused(push(clone, f"+{blob}:refs/heads/staging", PROD, f"refs/tags/{AGENT}/v2"),
            "error: refs/heads/staging: staging must point at a commit")
    assert tree_state(server) == before


def test_a_tag_object_named_for_another_publish_is_refused(clone: Path, server: Path) -> None:
    commit = staged(clone)
    oid = obj(clone, "tag", f"object {commit}\ntype commit\ntag hr-helpdesk/v2\n".encode()
              + b"tagger " + TAGGER + b"\n\n" + record(2, commit).encode())
    before = tree_state(server)
    refused(push(clone, f"{commit}:{PROD}", f"{oid}:refs/tags/{AGENT}/v2"),
            f"error: refs/tags/{AGENT}/v2: the tag object is named 'hr-helpdesk/v2'")
    assert tree_state(server) == before


def test_a_push_of_hundreds_of_blocking_names_is_refused_in_bounded_time(
        clone: Path, server: Path) -> None:
    before = tree_state(server)
    refs = [f"HEAD:refs/tags/{AGENT}/v1/x{n}" for n in range(300)]
    done = push(clone, *refs, user="mallory", atomic=False)
    refused(done, f"error: refs/tags/{AGENT}/v1/x0: refused: would block")
    assert done.stderr.count("refused: would block") == 300
    assert tree_state(server) == before
