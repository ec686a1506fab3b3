"""The fast paths keep the strict reading and never serve stale or foreign content.

`parse_tree` (whole-list checks in C) must accept and refuse exactly what the entry-by-
entry reader does, with the same entries and the same error; the process-wide caches
(trees by id, paths by commit, configurations by tree, tags by object) are keyed by ids
that name one content, so an edit or a publish is seen at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstage import agents, api_ops, publishing
from agentstage.errors import InvalidConfig
from agentstage.store import Lru, Store, parse_tree, parse_tree_slowly
from conftest import commit_all, git, write_agent

A = "billing-support"
MODES = [b"40000", b"100644", b"100755", b"120000", b"160000"]


def outcome(read: Any, data: bytes) -> Any:
    try:
        return ("ok", dict(read(data, "agents")))
    except InvalidConfig as exc:
        return ("refused", [tuple(p) for p in exc.problems], exc.hint)


def same(data: bytes) -> None:
    assert outcome(parse_tree, data) == outcome(parse_tree_slowly, data)


def serialize(entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
    return b"".join(mode + b" " + name + b"\0" + oid for mode, name, oid in entries)


names = st.one_of(
    st.sampled_from([b"a", b"a-b", b"a.b", b"a0", b"b", b".", b"..", b"", b"a/b", b"\xff",
                     b"\xc3\xa9", b"a b", b"agent.yaml", b"\xed\xa0\x80", b"z\n"]),
    st.binary(min_size=0, max_size=6),
)
entries = st.lists(st.tuples(st.sampled_from([*MODES, b"644", b"040000", b"1006440"]), names,
                             st.binary(min_size=20, max_size=20)), max_size=8)


def git_order(items: list[tuple[bytes, bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    return sorted(items, key=lambda e: e[1] + (b"/" if e[0] == b"40000" else b""))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_are_read_alike(data: bytes) -> None:
    same(data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(entries, st.booleans())
def test_random_entries_in_any_order_are_read_alike(items: list[Any], ordered: bool) -> None:
    same(serialize(git_order(items) if ordered else items))


@pytest.mark.parametrize("modes", [st.sampled_from(MODES), st.just(b"40000")],
                         ids=["any modes", "directories only"])
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_trees_are_read_alike(modes: Any, data: Any) -> None:
    good = st.from_regex(rb"\A[a-z0-9][a-z0-9.-]{0,8}\Z")
    items = data.draw(st.lists(st.tuples(modes, good, st.binary(min_size=20, max_size=20)),
                               max_size=10, unique_by=lambda e: e[1]))
    raw = serialize(git_order(items))
    same(raw)
    if not raw:
        return
    at = data.draw(st.integers(0, len(raw) - 1))
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "swap", "duplicate"]))
    if kind == "flip":
        mutated = raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:]
    elif kind == "cut":
        mutated = raw[:at]
    elif kind == "insert":
        mutated = raw[:at] + data.draw(st.sampled_from([b"/", b"\0", b" ", b"\xff"])) + raw[at:]
    else:
        ordered = git_order(items)
        n = data.draw(st.integers(0, len(ordered) - 1))
        if kind == "swap" and len(ordered) > 1:
            m = (n + 1) % len(ordered)
            ordered[n], ordered[m] = ordered[m], ordered[n]
        else:
            ordered.insert(n, ordered[n])
        mutated = serialize(ordered)
    same(mutated)


@pytest.mark.parametrize("items", [
    [(b"100644", b"a", b"1" * 20), (b"40000", b"a", b"2" * 20)],  # a file and a tree, one name
    [(b"40000", b"a", b"1" * 20), (b"100644", b"a-b", b"2" * 20)],  # `a/` sorts after `a-b`
    [(b"100644", b"a-b", b"2" * 20), (b"40000", b"a", b"1" * 20)],
    [(b"40000", b"a-b", b"2" * 20), (b"40000", b"a", b"1" * 20)],
    [(b"100644", b".", b"1" * 20)], [(b"40000", b"..", b"1" * 20)],
    [(b"100644", b"\xff", b"1" * 20)], [(b"100644", b"x/y", b"1" * 20)], [],
    [(b"40000", b"a", b"1" * 20), (b"40000", b"a", b"2" * 20)],
    [(b"40000", b"a", b"1" * 20), (b"40000", b"a-b", b"2" * 20)],
    [(b"40000", b"a-b", b"1" * 20), (b"40000", b"a", b"2" * 20), (b"40000", b"b", b"3" * 20)],
    [(b"40000", b"\xc3", b"1" * 20)], [(b"40000", b"..", b"1" * 20)],
])
def test_the_cases_where_git_order_is_subtle(items: list[Any]) -> None:
    same(serialize(items))


def test_a_real_agents_tree_reads_alike_and_finds_every_entry(repo: Path) -> None:
    store = Store.open(repo)
    tree = git(repo, "rev-parse", "staging:agents")
    data = bytes(store._repo.odb.read(tree)[1])
    fast, slow = parse_tree(data, "agents"), parse_tree_slowly(data, "agents")
    assert dict(fast) == slow and list(fast) == list(slow) and fast.get("nope") is None


def test_lru_keeps_its_weight_under_capacity_dropping_the_least_recent() -> None:
    cache: Lru[str, int] = Lru(10)
    for n in range(5):
        cache.put(str(n), n, 3)
    assert len(cache) == 3 and cache.get("0") is None and cache.get("4") == 4
    cache.get("2")
    cache.put("x", 9, 3)
    assert cache.get("2") == 2 and cache.get("3") is None
    cache.put("huge", 1, 11)
    assert cache.get("huge") is None


def test_the_caches_follow_each_edit_and_never_mix_two_repositories(repo: Path,
                                                                    tmp_path: Path) -> None:
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    write_agent(other, A, {"agent.yaml": "name: Other Bot\nmodel:\n  name: gpt-4o\n"})
    commit_all(other, "other")
    first = {r["agent"]: r["name"] for r in agents.agents_table(Store.open(repo))}
    second = {r["agent"]: r["name"] for r in agents.agents_table(Store.open(other))}
    assert second[A] == "Other Bot" and first[A] != "Other Bot"
    assert {r["agent"]: r["name"] for r in agents.agents_table(Store.open(repo))} == first
    write_agent(repo, A, {"agent.yaml": "name: Renamed\nmodel:\n  name: gpt-4o\n"})
    commit_all(repo, "rename")
    assert {r["agent"]: r["name"] for r in agents.agents_table(Store.open(repo))}[A] == \
        "Renamed"


def test_production_is_seen_anew_after_each_publish(repo: Path) -> None:
    author = "Ada <ada@example.com>"
    publishing.publish(Store.open(repo), A, "first", author=author)
    assert api_ops.production_list(Store.open(repo)) == [
        {"agent": A, "version": 1, "tag": f"{A}/v1"}]
    before = api_ops.production_view(Store.open(repo), A)["config"]["name"]
    write_agent(repo, A, {"agent.yaml": "name: Second\nmodel:\n  name: gpt-4o\n"})
    commit_all(repo, "rename")
    assert api_ops.production_view(Store.open(repo), A)["config"]["name"] == before
    publishing.publish(Store.open(repo), A, "second", author=author)
    assert api_ops.production_list(Store.open(repo)) == [
        {"agent": A, "version": 2, "tag": f"{A}/v2"}]
    assert api_ops.production_view(Store.open(repo), A)["config"]["name"] == "Second"
    row = next(r for r in agents.agents_table(Store.open(repo)) if r["agent"] == A)
    assert row["production"]["version"] == 2 and not row["staging_differs"]


def test_a_hostile_tree_is_refused_every_time_not_only_the_first(repo: Path) -> None:
    store = Store.open(repo)
    blob = git(repo, "rev-parse", f"staging:agents/{A}/agent.yaml")
    bad = serialize([(b"100644", b"b.yaml", bytes.fromhex(blob)),
                     (b"100644", b"a.yaml", bytes.fromhex(blob))])
    oid = str(store._repo.odb.write(2, bad))
    for _ in range(2):
        with pytest.raises(InvalidConfig, match="out of git's order"):
            Store.open(repo)._entries(oid, "x")


def test_a_history_page_reads_only_its_tags(repo: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    author = "Ada <ada@example.com>"
    for n in range(7):
        write_agent(repo, A, {"agent.yaml": f"name: Bot {n}\nmodel:\n  name: gpt-4o\n"})
        commit_all(repo, f"edit {n}")
        publishing.publish(Store.open(repo), A, f"publish {n}", author=author)
    every = publishing.history(Store.open(repo), A)
    assert [e["tag"] for e in every] == [f"{A}/v{n}" for n in range(7, 0, -1)]
    read: list[str] = []
    real = Store.tag

    def counting(self: Store, name: str) -> Any:
        read.append(name)
        return real(self, name)

    monkeypatch.setattr(Store, "tag", counting)
    pages, cursor = [], None
    while True:
        read.clear()
        page = api_ops.history_page(Store.open(repo), A, None, None, None, 2, cursor)
        # the page's tags, the one after it (is there a next page?) and each one's previous
        assert len({n for n in read if n.startswith(A)}) <= 4
        pages.append(page["publishes"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e for p in pages for e in p] == every
    assert all(e["verified"] for e in every)
    read.clear()
    assert api_ops.publish_entry(Store.open(repo), A, 3) == every[4]
    assert len(set(read)) <= 3
    for bad in (f"{A}/v8", f"{A}/v0", "other/v1", "nonsense"):
        with pytest.raises(Exception, match="unknown cursor"):
            api_ops.history_page(Store.open(repo), A, None, None, None, 2, bad)
    with pytest.raises(Exception, match="no publish"):
        api_ops.publish_entry(Store.open(repo), A, 8)
    alice = api_ops.history_page(Store.open(repo), A, "ada", None, None, 3, f"{A}/v5")
    assert [e["tag"] for e in alice["publishes"]] == [f"{A}/v4", f"{A}/v3", f"{A}/v2"]
    assert alice["next_cursor"] == f"{A}/v2"


def test_a_retired_agent_leaves_the_manifest_and_the_table_says_so(repo: Path) -> None:
    author = "Ada <ada@example.com>"
    for agent in ("billing-support", "hr-helpdesk"):
        publishing.publish(Store.open(repo), agent, "first", author=author)
    assert [r["agent"] for r in api_ops.production_list(Store.open(repo))] == [
        "billing-support", "hr-helpdesk"]
    publishing.retire(Store.open(repo), "hr-helpdesk", "gone", author=author)
    assert api_ops.production_list(Store.open(repo)) == [
        {"agent": A, "version": 1, "tag": f"{A}/v1"}]
    rows = {r["agent"]: r for r in agents.agents_table(Store.open(repo))}
    assert rows["hr-helpdesk"]["retired"] and rows["hr-helpdesk"]["production"]["version"] == 2
    assert not rows[A]["retired"]


def test_lru_shared_by_threads_stays_bounded_and_answers_what_was_put() -> None:
    import threading

    cache: Lru[int, int] = Lru(100)
    wrong: list[int] = []

    def work(seed: int) -> None:
        for n in range(5000):
            key = (n * 7 + seed) % 300
            cache.put(key, key * 2)
            found = cache.get(key)
            if found is not None and found != key * 2:
                wrong.append(key)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong and len(cache) <= 100
