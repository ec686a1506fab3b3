"""What agentstage keeps on disk across processes (diskcache.py): the same answers as
reading the objects, never an error of its own, never a stale or foreign answer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstage.agents import load_at
from agentstage.config import load_agent
from agentstage.diskcache import CACHE_DIR, DiskCache, fingerprint
from agentstage.errors import InvalidConfig
from agentstage.store import Store, clear_caches
from conftest import commit_all, git

AGENTS = ("billing-support", "hr-helpdesk", "sales-assistant")


@pytest.fixture(autouse=True)
def _new_process() -> None:
    """What earlier tests of this process read is forgotten, as in a new process."""
    clear_caches()


def cache_root(repo: Path) -> Path:
    return repo / ".git" / CACHE_DIR / fingerprint()


def entries(repo: Path, kind: str) -> list[Path]:
    root = cache_root(repo) / kind
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def strict_equal(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (1 is not 1.0, nor True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def fresh_load(store: Store, commit: str, agent: str) -> dict[str, Any]:
    files = store.agent_files(commit, agent)
    assert files is not None
    return load_agent(agent, files).as_dict()


def test_a_new_process_reads_from_disk_what_the_objects_hold(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    first = {a: load_at(Store.open(repo), head, a) for a in AGENTS}
    assert len(entries(repo, "c")) == 3 and len(entries(repo, "t")) == 3
    clear_caches()  # as a new process
    store = Store.open(repo)
    for agent in AGENTS:
        again = load_at(store, head, agent)
        assert again is not None and strict_equal(again, first[agent])
        assert strict_equal(again, fresh_load(store, head, agent))


def test_no_cache_env_writes_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTAGE_NO_CACHE", "1")
    clear_caches()
    head = git(repo, "rev-parse", "HEAD")
    assert load_at(Store.open(repo), head, "billing-support") is not None
    assert not (repo / ".git" / CACHE_DIR).exists()


@pytest.mark.parametrize("garbage", [b"", b"{", b"[1, 2]", b"\xff\xfe", b'{"name": "x"'])
def test_a_corrupt_entry_is_a_miss(repo: Path, garbage: bytes) -> None:
    head = git(repo, "rev-parse", "HEAD")
    store = Store.open(repo)
    expected = fresh_load(store, head, "billing-support")
    load_at(store, head, "billing-support")
    for path in entries(repo, "c"):
        path.write_bytes(garbage)
    for path in entries(repo, "t"):
        path.write_bytes(garbage[:3] + b"zz")
    clear_caches()
    again = load_at(Store.open(repo), head, "billing-support")
    assert again is not None and strict_equal(again, expected)


def test_a_cache_that_cannot_be_written_changes_nothing(repo: Path) -> None:
    (repo / ".git" / CACHE_DIR).write_text("not a directory")
    clear_caches()
    head = git(repo, "rev-parse", "HEAD")
    assert load_at(Store.open(repo), head, "hr-helpdesk") is not None
    done = subprocess.run([sys.executable, "-m", "agentstage", "diff", "hr-helpdesk"],
                          cwd=repo, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr


def test_an_invalid_agent_is_never_kept_and_names_where_each_time(repo: Path) -> None:
    path = repo / "agents" / "billing-support" / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 9"))
    head = commit_all(repo, "Too hot")
    for _ in range(2):
        clear_caches()
        with pytest.raises(InvalidConfig) as caught:
            load_at(Store.open(repo), head, "billing-support", "staging")
        assert "staging:agents/billing-support/agent.yaml" in str(caught.value.problems[0])
    assert all("billing-support" not in p.name for p in entries(repo, "c"))


def test_another_format_is_never_read_and_is_removed(repo: Path) -> None:
    old = repo / ".git" / CACHE_DIR / "0.0.1-00000000"
    (old / "c").mkdir(parents=True)
    (old / "c" / "planted").write_text("{}")
    clear_caches()
    load_at(Store.open(repo), git(repo, "rev-parse", "HEAD"), "billing-support")
    assert not old.exists() and cache_root(repo).is_dir()


def test_remembered_ancestry_agrees_with_git(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    path = repo / "agents" / "billing-support" / "agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.2", "temperature: 0.4"))
    second = commit_all(repo, "Warmer")
    for _ in range(2):  # computed, then read back
        clear_caches()
        store = Store.open(repo)
        assert store.is_ancestor(first, second, remember=True)
        assert not store.is_ancestor(second, first, remember=True)
    assert len(entries(repo, "a")) == 2


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(), JSON, max_size=6))
def test_a_configuration_comes_back_as_it_was_put(tmp_path_factory: pytest.TempPathFactory,
                                                  value: dict[str, Any]) -> None:
    cache = DiskCache(tmp_path_factory.mktemp("cache"))
    cache.put_config("agent", "ab" * 20, value)
    back = cache.config("agent", "ab" * 20)
    assert back is not None and strict_equal(back, value)


def test_entries_are_small_files_named_by_ids(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    load_at(Store.open(repo), head, "billing-support")
    [tree_entry] = entries(repo, "t")
    assert tree_entry.name == f"{head}.billing-support"
    assert re.fullmatch(rb"[0-9a-f]{40}", tree_entry.read_bytes())
    assert os.stat(tree_entry).st_size == 40


def test_an_entry_a_crash_left_empty_is_a_miss_not_an_answer(repo: Path) -> None:
    """A file created but never written must not read as "no such agent" (that is "-")."""
    head = git(repo, "rev-parse", "HEAD")
    store = Store.open(repo)
    expected = fresh_load(store, head, "billing-support")
    load_at(store, head, "billing-support")
    for path in entries(repo, "t") + entries(repo, "c"):
        path.write_bytes(b"")
    clear_caches()
    again = load_at(Store.open(repo), head, "billing-support")
    assert again is not None and strict_equal(again, expected)
    clear_caches()
    assert load_at(Store.open(repo), head, "no-such-agent") is None
    [absent] = [p for p in entries(repo, "t") if p.name.endswith(".no-such-agent")]
    assert absent.read_bytes() == b"-"
    clear_caches()
    assert load_at(Store.open(repo), head, "no-such-agent") is None



NAMES = st.sampled_from(["alice", "bob", "carol", "*", " ", ""])
POLICIES = st.fixed_dictionaries({}, optional={
    "admins": st.lists(NAMES, max_size=3), "editors": st.lists(NAMES, max_size=3),
    "publishers": st.dictionaries(st.sampled_from(["*", "bot", "Bad_Id"]),
                                  st.lists(NAMES, max_size=2), max_size=2),
    "users": st.dictionaries(NAMES, st.one_of(st.just("bob@x.org"), st.lists(
        st.sampled_from(["a@x.org", "not-an-email"]), max_size=2)), max_size=2),
    "approvals": st.dictionaries(st.sampled_from(["*", "bot"]), st.integers(-1, 3),
                                 max_size=2),
    "webhooks": st.lists(st.fixed_dictionaries(
        {"url": st.sampled_from(["https://h.example/x", "ftp://x"]),
         "events": st.just(["publish"]), "secret_env": st.sampled_from(["S", "1x"])},
        optional={"timeout": st.sampled_from([1, 2.5, 0])}), max_size=2),
    "signing": st.fixed_dictionaries({"required": st.booleans()}),
})


@settings(max_examples=400, deadline=None)
@given(data=POLICIES, who=NAMES | st.none(), email=st.sampled_from(["bob@x.org", "a@x.org"]))
def test_a_policy_read_back_answers_as_the_validated_one(data: dict[str, Any], who: str | None,
                                                         email: str) -> None:
    """meta.PolicyView, built from what a validation dumped, has the model's fields and
    gives its answers, for every policy that validates."""
    from agentstage.meta import PolicyView
    from agentstage.policy import Policy

    try:
        policy = Policy.model_validate(data)
    except ValueError:
        return
    dumped = json.loads(json.dumps(policy.model_dump(mode="json")))  # as the disk holds it
    view = PolicyView(dumped)
    for name in Policy.model_fields:
        mine, theirs = getattr(view, name), getattr(policy, name)
        if name == "webhooks":
            mine, theirs = [w._asdict() for w in mine], [w.model_dump() for w in theirs]
        elif name == "signing" and theirs is not None:
            mine, theirs = mine._asdict(), theirs.model_dump()
        assert mine == theirs, name
    assert view.is_admin(who) == policy.is_admin(who)
    assert view.is_editor(who) == policy.is_editor(who)
    assert view.is_publisher(who, "bot") == policy.is_publisher(who, "bot")
    assert view.tagger_refusal(who, email) == policy.tagger_refusal(who, email)


def test_a_policy_commit_is_validated_once(repo: Path, run: Any) -> None:
    from agentstage.meta import PolicyView, read_policy
    from agentstage.policy import Policy

    policy = repo / "policy.yaml"
    policy.write_text("admins: [alice]\neditors: ['*']\npublishers: {'*': [alice]}\n")
    assert run("policy", "set", str(policy), repo=repo).code == 0
    clear_caches()
    first = read_policy(Store.open(repo))
    assert isinstance(first, Policy)  # validated, and left on disk
    clear_caches()
    again = read_policy(Store.open(repo))
    assert isinstance(again, PolicyView) and again.is_admin("alice")
    for path in entries(repo, "p"):
        path.write_bytes(b'{"admins": ')  # cut short: validated again
    clear_caches()
    assert isinstance(read_policy(Store.open(repo)), Policy)
