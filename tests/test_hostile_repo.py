"""A hostile repository: each attack is a repository prepared by the attacker, which the
victim clones (real `git clone`) or fetches from, then runs ordinary agentstage commands
in. Afterwards nothing outside the repository changed (a sibling directory's checksum),
no secret from outside was printed, and no command ended in an internal error."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import commit_all, git, sample_repo, tree_state

A = "billing-support"
SECRET = "sk-live-SECRET-TOKEN-4242"


def checksum(directory: Path) -> str:
    """Every path below *directory* with its kind and bytes (links not followed)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames
                                        if os.path.islink(os.path.join(dirpath, d))]):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, directory).encode() + b"\0")
            if os.path.islink(path):
                digest.update(b"link:" + os.readlink(path).encode())
            else:
                digest.update(Path(path).read_bytes())
        for name in sorted(dirnames):
            digest.update(os.path.relpath(os.path.join(dirpath, name), directory).encode()
                          + b"/\0")
    return digest.hexdigest()


def attacker_repo(base: Path, run: Any) -> Path:
    """The attacker's repository: the sample agents on staging, billing-support published."""
    path = sample_repo(base, "attacker")
    assert run("publish", A, "-m", "first", "--no-push", repo=path).code == 0
    return path


def clone(source: Path, base: Path, name: str = "victim") -> Path:
    target = base / name
    git(base, "clone", "-q", str(source), str(target))
    git(target, "fetch", "-q", "--tags")
    return target


def no_internal_error(result: Any) -> None:
    assert result.code != 70, result.err
    assert "internal error" not in result.err and "Traceback" not in result.err


# -- 1. never leave the repository ---------------------------------------------------------

@pytest.fixture
def sibling(tmp_path: Path) -> Path:
    """A project beside the victim's clone, which no command may touch."""
    other = tmp_path / "other-project"
    other.mkdir()
    (other / "CMakeLists.txt").write_text("project(other)\n")
    return other


def test_restore_through_a_committed_agent_link_changes_nothing_outside(
        run: Any, tmp_path: Path, sibling: Path) -> None:
    source = attacker_repo(tmp_path, run)
    shutil.rmtree(source / "agents" / A)
    (source / "agents" / A).symlink_to("../../other-project")
    commit_all(source, "a link where an agent was")
    victim = clone(source, tmp_path)
    before, refs = checksum(sibling), tree_state(victim)
    result = run("restore", A, "v1", repo=victim)
    assert result.code == 4, result
    assert f"agents/{A}" in result.err and "symbolic link" in result.err
    assert checksum(sibling) == before
    assert tree_state(victim) == refs


def test_new_through_a_committed_agents_link_changes_nothing_outside(
        run: Any, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    source = tmp_path / "attacker"
    source.mkdir()
    git(source, "init", "-q", "-b", "staging")
    (source / "agents").symlink_to("../outside")
    commit_all(source, "agents is a link")
    victim = clone(source, tmp_path)
    before, refs = checksum(outside), tree_state(victim)
    result = run("new", "support-bot", "--name", "Support", repo=victim)
    assert result.code == 4, result
    assert "agents" in result.err and "symbolic link" in result.err
    assert checksum(outside) == before and not any(outside.iterdir())
    assert tree_state(victim) == refs


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    """Someone's keys beside the clone, laid out like an agent directory."""
    keys = tmp_path / "secret" / "keys"
    keys.mkdir(parents=True)
    (keys / "agent.yaml").write_text(f"name: Keys\nmodel: {SECRET}\n")
    return keys


def linked_agents_clone(run: Any, tmp_path: Path) -> Path:
    """A clone whose committed `agents` is a link to ../secret (so agents/keys is the
    secret directory)."""
    source = attacker_repo(tmp_path, run)
    shutil.rmtree(source / "agents")
    (source / "agents").symlink_to("../secret")
    commit_all(source, "agents is a link")
    return clone(source, tmp_path)


def test_validate_never_reads_through_a_linked_agents_directory(
        run: Any, tmp_path: Path, secret_dir: Path) -> None:
    victim = linked_agents_clone(run, tmp_path)
    before = checksum(secret_dir.parent)
    for args in (("validate",), ("validate", "agents"), ("validate", "agents/keys")):
        result = run(*args, repo=victim)
        no_internal_error(result)
        assert result.code == 4, (args, result)
        assert SECRET not in result.out + result.err, args
        assert "agents: is a symbolic link" in result.out + result.err, (args, result)
    assert checksum(secret_dir.parent) == before


def test_show_of_the_work_tree_never_reads_through_a_link(
        run: Any, tmp_path: Path, secret_dir: Path) -> None:
    victim = linked_agents_clone(run, tmp_path)
    result = run("show", "keys", repo=victim)
    no_internal_error(result)
    assert result.code == 4, result
    assert SECRET not in result.out + result.err
    assert "agents: is a symbolic link" in result.err


def test_show_and_validate_refuse_a_linked_agent_directory_in_the_checkout(
        run: Any, tmp_path: Path, secret_dir: Path) -> None:
    victim = clone(attacker_repo(tmp_path, run), tmp_path)
    (victim / "agents" / "keys").symlink_to("../../secret/keys")
    for args in (("show", "keys"), ("validate",)):
        result = run(*args, repo=victim)
        assert result.code == 4, (args, result)
        assert SECRET not in result.out + result.err
        assert "agents/keys: an agent directory must not be a symbolic link" in \
            result.out + result.err


def test_new_never_writes_through_a_link_in_the_checkout(
        run: Any, tmp_path: Path) -> None:
    """A link left in the checkout where the new agent goes (git does not track it): the
    files are not written through it, staging does not move."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = clone(attacker_repo(tmp_path, run), tmp_path)
    (victim / "agents" / "support-bot").symlink_to("../../outside")
    refs = tree_state(victim)
    result = run("new", "support-bot", "--name", "Support", repo=victim)
    assert result.code == 4, result
    assert "agents/support-bot: is a symbolic link" in result.err
    assert not any(outside.iterdir())
    assert tree_state(victim) == refs


def test_set_never_writes_through_a_linked_agents_directory_in_the_checkout(
        run: Any, tmp_path: Path, sibling: Path) -> None:
    """`agents` replaced by a link to a copy outside (git sees the files as unchanged):
    set refuses before staging moves, and the copy outside is not written."""
    victim = clone(attacker_repo(tmp_path, run), tmp_path)
    shutil.copytree(victim / "agents", sibling / "agents")
    shutil.rmtree(victim / "agents")
    (victim / "agents").symlink_to("../other-project/agents")
    before, refs = checksum(sibling), tree_state(victim)
    result = run("set", A, "model.temperature=0.9", "-m", "warmer", repo=victim)
    assert result.code == 4, result
    assert "agents: is a symbolic link" in result.err
    assert checksum(sibling) == before
    assert tree_state(victim) == refs


# -- 4. costs bounded by what exists ---------------------------------------------------------

def agentstage(repo: Path, *args: str, seconds: float = 20.0, megabytes: int = 2048
               ) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of agentstage in its own process, with its
    address space capped, so a runaway allocation fails there and not in the test run."""
    def cap() -> None:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "agentstage", "-C", str(repo), *args],
                          capture_output=True, text=True, timeout=seconds, preexec_fn=cap,
                          check=False)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def tag_copies(repo: Path, names: list[str]) -> None:
    """Refs refs/tags/<name> pointing at billing-support/v1's tag object."""
    v1 = git(repo, "rev-parse", f"refs/tags/{A}/v1")
    for name in names:
        git(repo, "update-ref", f"refs/tags/{name}", v1)


def test_sparse_version_numbers_cost_only_the_refs_that_exist(run: Any, tmp_path: Path) -> None:
    source = attacker_repo(tmp_path, run)
    tag_copies(source, [f"{A}/v{2 ** k}" for k in range(1, 41)])
    victim = clone(source, tmp_path)
    code, out, err, seconds = agentstage(victim, "history", A, "--format", "json")
    assert code == 0, err
    assert seconds < 10, seconds
    entries = json.loads(out)
    assert [e["tag"] for e in entries] == [f"{A}/v2", f"{A}/v1"]  # v1 and v2 are contiguous
    assert f"refs/tags/{A}/v4" in err and "v3 is missing" in err
    code, out, err, seconds = agentstage(victim, "agents", "--format", "json")
    assert code == 0, err
    row = next(r for r in json.loads(out) if r["agent"] == A)
    assert row["production"]["version"] == 2
    assert "1099511627776" not in out


def test_one_huge_version_number_is_a_finding_not_a_memory_error(run: Any,
                                                                 tmp_path: Path) -> None:
    source = attacker_repo(tmp_path, run)
    tag_copies(source, [f"{A}/v1000000000000"])
    victim = clone(source, tmp_path)
    code, out, err, seconds = agentstage(victim, "doctor", "--format", "json",
                                         megabytes=1024)
    assert code == 1, err  # unhealthy, with the finding
    assert seconds < 10
    findings = json.loads(out)["findings"]
    gap = next(f for f in findings if f["kind"] == "version-gap")
    assert "v2" in gap["message"] and "v999999999999" in gap["message"]
    assert len(gap["message"]) < 300
    assert f"git tag -d {A}/v1000000000000" in gap["fix"]
    assert agentstage(victim, "history", A)[0] == 0


def test_a_lightweight_tag_is_reported_and_the_rest_of_history_shown(run: Any,
                                                                     tmp_path: Path) -> None:
    source = attacker_repo(tmp_path, run)
    git(source, "tag", f"{A}/v2", "staging")  # lightweight
    victim = clone(source, tmp_path)
    result = run("history", A, "--format", "json", repo=victim)
    assert result.code == 0, result.err
    assert [e["tag"] for e in result.json()] == [f"{A}/v1"]
    assert f"refs/tags/{A}/v2" in result.err and "lightweight" in result.err
    every = run("history", "--format", "json", repo=victim)
    assert every.code == 0, every.err
    assert [e["tag"] for e in every.json()] == [f"{A}/v1"]


def test_a_tag_below_a_version_name_is_reported_by_doctor_with_the_fix(
        run: Any, tmp_path: Path) -> None:
    source = attacker_repo(tmp_path, run)
    tag_copies(source, [f"{A}/v2/x"])
    victim = clone(source, tmp_path)
    result = run("doctor", "--format", "json", repo=victim)
    assert result.code == 1, result
    stray = next(f for f in result.json()["findings"] if f["kind"] == "stray-tag")
    assert stray["where"] == f"refs/tags/{A}/v2/x"
    assert stray["fix"] == f"git tag -d {A}/v2/x"
    assert f"{A}/v2" in stray["message"]


# -- 9. revert takes the publish before from the reverted publish's own record --------------

def three_publishes(run: Any, base: Path) -> Path:
    """The team's repository: billing-support v1 as sampled, v2 with a knowledge source
    more, v3 with a new temperature."""
    source = attacker_repo(base, run)
    path = source / "agents" / A / "knowledge.yaml"
    path.write_text(path.read_text() + "- id: status-page\n  type: website\n"
                    "  settings: {url: \"https://status.example.com\"}\n")
    commit_all(source, "status page")
    assert run("publish", A, "-m", "second", "--no-push", repo=source).code == 0
    path = source / "agents" / A / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.7"))
    commit_all(source, "warmer")
    assert run("publish", A, "-m", "third", "--no-push", repo=source).code == 0
    return source


def test_revert_without_the_previous_tag_uses_the_record(run: Any, tmp_path: Path) -> None:
    victim = clone(three_publishes(run, tmp_path), tmp_path)
    git(victim, "tag", "-d", f"{A}/v2")
    result = run("revert", A, "v3", "-m", "too warm", "--format", "json", repo=victim)
    assert result.code == 0, result.err
    config = run("show", A, "--env", "staging", "--format", "json", repo=victim).json()
    assert config["model"]["temperature"] == 0.2  # v3's change undone
    assert "status-page" in [k["id"] for k in config["knowledge"]]  # v2's kept
    assert (victim / "agents" / A / "agent.yaml").is_file()


def test_revert_refuses_when_the_publish_before_is_unknown(run: Any, tmp_path: Path) -> None:
    source = three_publishes(run, tmp_path)
    victim = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{source}", str(victim))
    assert git(victim, "tag", "-l") == f"{A}/v3"
    refs = tree_state(victim)
    result = run("revert", A, "v3", repo=victim)
    assert result.code == 6, result
    assert f"{A}/v2" in result.err and "git fetch --tags" in result.err
    assert tree_state(victim) == refs
    assert (victim / "agents" / A / "agent.yaml").is_file()


def test_versions_are_read_from_packed_and_loose_refs_alike(run: Any, tmp_path: Path) -> None:
    """A clone's refs are packed; later ones are loose; a name that holds another
    agent's tag name inside it is not that agent's."""
    source = attacker_repo(tmp_path, run)
    tag_copies(source, [f"other/refs/tags/{A}/v2", f"{A}-x/v2"])
    victim = clone(source, tmp_path)
    assert (victim / ".git" / "packed-refs").read_text().count(f"refs/tags/{A}/v1") == 1
    assert run("history", A, "--format", "json", repo=victim).json()[0]["tag"] == f"{A}/v1"
    path = victim / "agents" / A / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.3"))
    commit_all(victim, "warmer")
    assert run("publish", A, "-m", "second", "--no-push", repo=victim).code == 0
    assert (victim / ".git" / "refs" / "tags" / A / "v2").is_file()  # loose
    entries = run("history", A, "--format", "json", repo=victim).json()
    assert [e["tag"] for e in entries] == [f"{A}/v2", f"{A}/v1"]
    assert run("agents", "--format", "json", repo=victim).json()[0]["production"][
        "version"] == 2


# -- 8. no internal error from any repository content ---------------------------------------

def raw_object(repo: Path, kind: str, data: bytes) -> str:
    done = subprocess.run(["git", "-C", str(repo), "hash-object", "-t", kind, "--literally",
                           "-w", "--stdin"], input=data, capture_output=True, check=True)
    return done.stdout.decode().strip()


RECORD = json.dumps({"agent": A, "version": 2, "previous": f"{A}/v1", "changes": []})
TAGGER = "tagger Mallory <m@example.com> 1700000000 +0000\n"


def hostile_tag(source: Path, case: str) -> bytes:
    commit = git(source, "rev-parse", "staging")
    target, kind, tagger, record = commit, "commit", TAGGER, RECORD
    if case == "no tagger line":
        tagger = ""
    elif case == "tagger time 99999999999999":
        tagger = "tagger Mallory <m@example.com> 99999999999999 +0000\n"
    elif case == "on a tree":
        target, kind = git(source, "rev-parse", "staging^{tree}"), "tree"
    elif case == "on a blob":
        target, kind = git(source, "rev-parse", f"staging:agents/{A}/agent.yaml"), "blob"
    elif case == "record is a list":
        record = "[]"
    elif case == "changes is a number":
        record = json.dumps({"agent": A, "version": 2, "changes": 5})
    elif case == "record nested 100000 deep":
        record = "[" * 100_000 + "]" * 100_000
    return (f"object {target}\ntype {kind}\ntag {A}/v2\n{tagger}\nwhy\n\n"
            f"agentstage-publish-record: 1\n{record}\n").encode()


TAG_CASES = ["no tagger line", "tagger time 99999999999999", "on a tree", "on a blob",
             "record is a list", "changes is a number", "record nested 100000 deep"]


@pytest.mark.parametrize("case", TAG_CASES)
def test_a_hostile_tag_is_a_clean_error_for_every_command(run: Any, tmp_path: Path,
                                                          case: str) -> None:
    source = attacker_repo(tmp_path, run)
    oid = raw_object(source, "tag", hostile_tag(source, case))
    git(source, "update-ref", f"refs/tags/{A}/v2", oid)
    victim = clone(source, tmp_path)
    assert git(victim, "rev-parse", f"refs/tags/{A}/v2") == oid
    refs = tree_state(victim)
    bad_object = not case.startswith(("record", "changes"))  # else the record is bad
    expected = {("history",): {0}, ("history", A): {0}, ("doctor",): {1},
                ("show", A, "--env", "v2"): {4} if bad_object else {0},
                ("revert", A, "v2"): {4},
                ("restore", A, "v2"): {4} if bad_object else {3},  # staging is v2's
                ("agents",): {0, 4}, ("diff", A): {0, 4}}
    for args, codes in expected.items():
        result = run(*args, repo=victim)
        no_internal_error(result)
        assert result.code in codes, (args, result)
        if result.code == 4:
            assert f"{A}/v2" in result.err, (args, result)
    history = run("history", A, "--format", "json", repo=victim)
    assert [e["tag"] for e in history.json()] == [f"{A}/v1"]
    assert f"refs/tags/{A}/v2" in history.err
    assert tree_state(victim) == refs


def test_a_gitlink_under_agents_is_a_clean_error_in_a_pull_request_diff(
        run: Any, tmp_path: Path) -> None:
    source = attacker_repo(tmp_path, run)
    base = git(source, "rev-parse", "staging")
    commit = git(source, "rev-parse", "staging")
    git(source, "update-index", "--add", "--cacheinfo", f"160000,{commit},agents/sub")
    git(source, "commit", "-q", "-m", "a submodule among the agents")
    victim = clone(source, tmp_path)
    for fmt in ("text", "json", "markdown"):
        result = run("diff", "--base", base, "--head", "staging", "--format", fmt,
                     repo=victim)
        no_internal_error(result)
        assert result.code == 4, (fmt, result)
        assert "agents/sub" in result.err and "submodule" in result.err


# -- 10. a bad directory in a listing; no setting that nothing reads ------------------------

def test_diff_of_every_agent_reports_a_bad_directory_and_goes_on(run: Any,
                                                                   tmp_path: Path) -> None:
    source = attacker_repo(tmp_path, run)
    shutil.copytree(source / "agents" / "hr-helpdesk", source / "agents" / "Old_Bot")
    commit_all(source, "a directory that is not an agent id")
    victim = clone(source, tmp_path)
    result = run("diff", "--format", "json", repo=victim)
    assert result.code == 0, result.err
    assert {r["agent"] for r in result.json()} == {"hr-helpdesk", "sales-assistant"}
    assert "agents/Old_Bot" in result.err and "'old-bot'" in result.err


def test_the_readme_documents_no_repository_settings_file() -> None:
    """agentstage.yaml was documented as repository settings, but nothing reads it."""
    assert "agentstage.yaml" not in (Path(__file__).parent.parent / "README.md").read_text()


def test_a_tag_below_the_next_version_is_named_by_publish(run: Any, repo: Path) -> None:
    """`bot/v2/x` blocks the tag `bot/v2` in git's ref storage: publish names it and says
    how to remove it, instead of 'run the command again'."""
    assert run("publish", "billing-support", "-m", "v1", repo=repo).code == 0
    assert run("set", "billing-support", "model.temperature=0.4", repo=repo).code == 0
    git(repo, "tag", "billing-support/v2/x", "staging")
    before = tree_state(repo)
    done = run("publish", "billing-support", "-m", "v2", repo=repo)
    assert done.code == 5
    assert "refs/tags/billing-support/v2/x blocks the refs a publish of billing-support/v2 " \
           "writes" in done.err
    assert "git update-ref -d refs/tags/billing-support/v2/x" in done.err
    assert tree_state(repo) == before


def test_a_link_where_an_agent_should_be_leaves_the_other_agents_listed(
        run: Any, bare: Path) -> None:
    blob = subprocess.run(["git", "-C", str(bare), "hash-object", "-w", "--stdin"],
                          input=b"../elsewhere", capture_output=True,
                          check=True).stdout.decode().strip()
    entries = git(bare, "ls-tree", "staging:agents").splitlines()
    listing = "".join(line + "\n" for line in entries) + f"120000 blob {blob}\tlinked\n"
    tree = subprocess.run(["git", "-C", str(bare), "mktree"], input=listing, text=True,
                          capture_output=True, check=True).stdout.strip()
    root = git(bare, "ls-tree", "staging^{tree}").replace(
        git(bare, "rev-parse", "staging:agents"), tree)
    root_tree = subprocess.run(["git", "-C", str(bare), "mktree"], input=root + "\n",
                               text=True, capture_output=True, check=True).stdout.strip()
    git(bare, "update-ref", "refs/heads/staging",
        git(bare, "commit-tree", root_tree, "-p", "staging", "-m", "a link"))
    rows = run("agents", "--format", "json", repo=bare)
    assert rows.code == 0, rows.err
    by_agent = {r["agent"]: r for r in rows.json()}
    assert "is a symbolic link" in by_agent["linked"]["problem"]
    assert by_agent["billing-support"]["name"] == "Billing Support Bot"
