"""Hostile input: property tests of the loader, the diff, revert and the field-path
parser; a corpus of hostile YAML (tests/hostile/) through `agentstage validate` in
real processes with bounded time and memory; hostile ids, refs, case collisions and
symbolic links. Every one is a clean error with its exit code, and nothing is written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from agentstage.errors import InvalidConfig, UsageError
from agentstage.escape import hidden, terminal
from agentstage.fieldpath import ENTRY_ID_RE, LIST_SECTIONS, Entry, Key, parse_path, render_path
from agentstage.ids import AGENT_ID_RULE
from agentstage.model import AgentConfig
from agentstage.semdiff import MISSING, diff_configs, is_order_change, value_at
from agentstage.yamlload import MAX_FILE_BYTES, MAX_VALUES, Document, parse_yaml
from conftest import AUTHOR, commit_all, git, tree_state, write_agent

CORPUS = Path(__file__).parent / "hostile"
STRESS = os.environ.get("AGENTSTAGE_STRESS") == "1"
AGENT = "billing-support"
HEAD = "name: Hostile\nmodel:\n  name: gpt-4o\n"
SECONDS = 2.0
MEGABYTES = 300

# -- the loader ------------------------------------------------------------------------------

YAMLISH = st.text(alphabet=st.sampled_from(list("ab:- \n\t[]{},&*!|>'\"#?%@`~.0\\\x07\ufeff")),
                  max_size=200)


@settings(max_examples=300, deadline=SECONDS * 1000)
@given(st.one_of(st.binary(max_size=300), YAMLISH.map(str.encode)))
def test_loader_takes_any_bytes(data: bytes) -> None:
    try:
        doc = parse_yaml(data, "agent.yaml")
    except InvalidConfig as exc:
        assert exc.problems and all(p.file == "agent.yaml" for p in exc.problems)
        return
    assert isinstance(doc, Document)


# -- the diff --------------------------------------------------------------------------------

# The loader refuses keys with control or invisible characters (U+0085 among them:
# tests/test_escaping.py); '?' and ':' are written quoted by the editor.
KEYS = st.one_of(st.sampled_from(["a", "b", "top.p", "", "x y", '"q"', "[0]", "ключ", "a.b[c]",
                                  "a: b", "?x", "k:"]),
                 st.text(max_size=6)).filter(lambda key: hidden(key) is None)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8)
FREE = st.dictionaries(KEYS, JSON, max_size=3)
IDS = st.sampled_from(["a", "b", "c.d", "x:1", "tone", "e-f"])


def entries(**fields: Any) -> st.SearchStrategy[list[dict[str, Any]]]:
    key = "type" if "type" in fields and "id" not in fields else "id"
    return st.lists(st.fixed_dictionaries(fields), max_size=3, unique_by=lambda e: e[key])


ACTIONS = entries(id=IDS, enabled=st.booleans(), config=FREE)
CONFIGS = st.builds(
    lambda settings_, instructions, knowledge, tools, guardrails: AgentConfig.model_validate(
        {"settings": settings_, "instructions": instructions, "knowledge": knowledge,
         "tools": tools, "guardrails": guardrails}).as_dict(),
    st.fixed_dictionaries({
        "name": st.sampled_from(["Bot", "Other bot"]),
        "description": st.sampled_from(["", "short", "line one\nline two\n"]),
        "model": st.fixed_dictionaries({
            "name": st.sampled_from(["gpt-4o", "o3"]),
            "temperature": st.sampled_from([0.0, 0.2, 1.5]),
            "parameters": FREE}),
        "access": st.sampled_from(["private", "public"]),
        "tags": st.lists(st.sampled_from(["x", "y", "z"]), max_size=3)}),
    entries(id=IDS, text=st.sampled_from(["Be brief.", "Be kind.\nAlways.\n"])),
    # settings follow the type (a website needs its url); free-form values go in a corpus's
    # metadata_filters. Guardrail types are known ones or x-<name>.
    st.lists(st.one_of(
        st.fixed_dictionaries({"id": IDS, "type": st.just("corpus"),
                               "settings": st.fixed_dictionaries({"metadata_filters": FREE})}),
        st.fixed_dictionaries({"id": IDS, "type": st.just("website"), "settings":
                               st.fixed_dictionaries({"url": st.sampled_from(
                                   ["https://a.example", "https://b.example/x"])})})),
        max_size=3, unique_by=lambda e: e["id"]),
    entries(id=IDS, enabled=st.booleans(), config=FREE, actions=ACTIONS),
    entries(type=st.sampled_from(["toxicity", "pii-redaction", "x-a", "x-c.d", "custom-x:1"]),
            enabled=st.booleans(), config=FREE),
)


@settings(max_examples=200, deadline=None)
@given(CONFIGS)
def test_diff_of_a_config_with_itself_is_empty(config: dict[str, Any]) -> None:
    assert diff_configs(config, config) == []


def norm(value: Any) -> str:
    """A configuration as the diff compares it, written independently of it: every list but
    the instructions is a set, 1.0 is 1 (true is not), key order does not count."""
    def canon(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {str(k): canon(x) for k, x in v.items()}
        if isinstance(v, list):
            return sorted((canon(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
        return v
    ordered = [canon(e) for e in value.get("instructions", [])]
    rest = {k: v for k, v in value.items() if k != "instructions"}
    return json.dumps([canon(rest), ordered], sort_keys=True)


def round_trip(config: dict[str, Any]) -> dict[str, Any]:
    from agentstage.config import load_agent

    return load_agent("bot", agent_files(config)).as_dict()


def shuffled(config: dict[str, Any]) -> dict[str, Any]:
    """The same configuration with every list whose order does not count reversed."""
    out = json.loads(json.dumps(config))
    for section in ("knowledge", "tools", "guardrails"):
        out[section] = list(reversed(out[section]))
    out["tags"] = list(reversed(out["tags"]))
    return out


@settings(max_examples=200, deadline=None)
@given(CONFIGS, CONFIGS, st.booleans())
def test_a_diff_is_empty_exactly_when_the_configurations_are_equal(
        a: dict[str, Any], b: dict[str, Any], same_config: bool) -> None:
    """Both ways: a diff that ignored a section, or reported an order that does not count,
    fails here (the configurations are read back from YAML files first)."""
    if same_config:
        b = shuffled(a)
    ra, rb = round_trip(a), round_trip(b)
    assert (diff_configs(ra, rb) == []) == (norm(ra) == norm(rb)), (ra, rb)


@settings(max_examples=300, deadline=None)
@given(CONFIGS, CONFIGS)
def test_every_change_path_names_both_sides_values(a: dict[str, Any], b: dict[str, Any]) -> None:
    for change in diff_configs(a, b):
        old, new = value_at(a, change.path), value_at(b, change.path)
        if change.change == "added":
            assert old is MISSING and new == change.staging, change
        elif change.change == "removed":
            assert old == change.production and new is MISSING, change
        elif is_order_change(change):  # instructions reordered: the ids in order
            assert ([e["id"] for e in old], [e["id"] for e in new]) == (
                change.production, change.staging), change
        else:
            assert (old, new) == (change.production, change.staging), change


def as_yaml(value: Any) -> bytes:
    """JSON is YAML 1.2, but YAML wants characters it cannot print escaped, and astral
    ones unescaped (it has no surrogate pairs)."""
    text = json.dumps(value, indent=1, ensure_ascii=False)
    return re.sub(r"[\x7f-\x9f\u2028\u2029\ufffe\uffff]",
                  lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def agent_files(config: dict[str, Any]) -> dict[str, bytes]:
    """An agent's files holding *config*."""
    files = {"agent.yaml": as_yaml({k: v for k, v in config.items() if k not in LIST_SECTIONS})}
    for name in LIST_SECTIONS:
        if config[name]:
            files[f"{name}.yaml"] = as_yaml(config[name])
    return files


TINY = AgentConfig.model_validate({"settings": {
    "name": "Bot", "model": {"name": "gpt-4o", "parameters": {"a": 1.615366770918863e-123}}}}
).as_dict()


@settings(max_examples=100 if STRESS else 15, deadline=None, derandomize=not STRESS,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])  # two equal configs: assumed away
@given(CONFIGS, CONFIGS)
@example(TINY, {**TINY, "tags": ["x"]})  # a float ruamel re-formatted: an internal error once
def test_revert_of_a_publish_gives_back_the_configuration_before_it(
        run: Any, tmp_path: Path, a: dict[str, Any], b: dict[str, Any]) -> None:
    from agentstage.agents import load_at
    from agentstage.store import STAGING, Store, parse_identity

    assume(diff_configs(a, b))
    path = Path(tempfile.mkdtemp(dir=tmp_path))
    store = Store.init(path, bare=True)
    who = parse_identity(AUTHOR)
    staging = None
    for config in (a, b):
        commit = store.commit_agent(staging, "bot", agent_files(config), "edit", who)
        store.update_refs({STAGING: (staging, commit)}, "edit", who)
        staging = commit
        done = run("publish", "bot", "-m", "go", repo=path)
        assert done.code == 0, done.err
    done = run("revert", "bot", "v2", repo=path)
    assert done.code == 0, done.err
    reverted = load_at(Store.open(path), store.ref(STAGING), "bot")
    assert reverted is not None
    assert norm(reverted) == norm(round_trip(a))  # not the diff as its own oracle


# (a key with U+0085 or another control or invisible character is refused by the loader:
# tests/test_escaping.py::test_set_refuses_a_key_with_an_invisible_character)
@pytest.mark.parametrize(("agent_yaml", "key"), [
    ("name: Bot\nmodel: {name: x, parameters: {}}\n", "0?"),
    ("name: Bot\nmodel: {name: x, parameters: {}}\n", ":0"),
])
def test_odd_keys_are_written_quoted_and_read_back(run: Any, tmp_path: Path, agent_yaml: str,
                                          key: str) -> None:
    path = tmp_path / "r"
    path.mkdir()
    git(path, "init", "-q", "-b", "staging")
    write_agent(path, "bot", {"agent.yaml": agent_yaml})
    commit_all(path, "bot")
    result = run("set", "bot", f"model.parameters.{json.dumps(key)}=1", repo=path)
    assert result.code == 0, result.err
    shown = run("show", "bot", "--format", "json", repo=path).json()
    assert shown["model"]["parameters"][key] == 1


# -- the field-path parser -------------------------------------------------------------------

PATH_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(list('ab.[]"\\-_:0 tools[x]actions')), max_size=40))


@settings(max_examples=500, deadline=None)
@given(PATH_TEXT)
def test_field_path_parser_takes_any_text(text: str) -> None:
    try:
        path = parse_path(text)
    except UsageError as exc:
        assert "field path" in exc.message
        return
    assert path and parse_path(render_path(path)) == path


NAMES = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True), st.text())
ENTRY_IDS = st.from_regex(ENTRY_ID_RE, fullmatch=True)


@st.composite
def field_paths(draw: st.DrawFn) -> tuple[Key | Entry, ...]:
    first = draw(st.one_of(st.sampled_from(LIST_SECTIONS), NAMES))
    parts: list[Key | Entry] = [Key(first)]
    if first in LIST_SECTIONS:
        parts.append(Entry(draw(ENTRY_IDS)))
        if first == "tools" and draw(st.booleans()):
            parts += [Key("actions"), Entry(draw(ENTRY_IDS))]
    rest = draw(st.lists(NAMES, max_size=3))
    if rest and parts[-2:-1] == [Key("tools")] and rest[0] == "actions":
        rest[0] = "action"  # tools[x].actions takes an [ID] next
    return (*parts, *(Key(n) for n in rest))


@settings(max_examples=300, deadline=None)
@given(field_paths())
def test_field_paths_render_and_parse_back(path: tuple[Key | Entry, ...]) -> None:
    assert parse_path(render_path(path)) == path


# -- the hostile YAML corpus ------------------------------------------------------------------

# file -> (exit code, what the located problem line says)
CORPUS_CASES: dict[str, tuple[int, str]] = {
    "alias-bomb.yaml": (4, "agent.yaml:1: anchor &a is not allowed"),
    "alias-bomb-in-value.yaml": (4, "agent.yaml:4: anchor &d is not allowed"),
    "undefined-alias.yaml": (4, "agent.yaml:4: alias *nowhere is not allowed"),
    "binary-tag.yaml": (4, "agent.yaml:4: tag tag:yaml.org,2002:binary is not allowed"),
    "complex-key.yaml": (4, "agent.yaml:4: a mapping or list cannot be a key"),
    "control-characters.yaml": (4, "agent.yaml:4: invalid YAML: control character U+0007"),
    "deep-nesting-block.yaml": (4, "agent.yaml:35: nesting is deeper than 32 levels"),
    "deep-nesting-block-list.yaml": (4, "agent.yaml:36: nesting is deeper than 32 levels"),
    "deep-nesting-flow-list.yaml": (4, "agent.yaml:4: nesting is deeper than 32 levels"),
    "deep-nesting-flow-map.yaml": (4, "agent.yaml:4: nesting is deeper than 32 levels"),
    "document-end-then-more.yaml": (4, "agent.yaml:5: more than one YAML document"),
    "duplicate-keys-at-depth.yaml": (4, "agent.yaml:9: duplicate key 'key' (first at line 7)"),
    "duplicate-top-keys.yaml": (4, "agent.yaml:4: duplicate key 'name' (first at line 1)"),
    "empty.yaml": (4, "agent.yaml: file is empty"),
    "only-comments.yaml": (4, "agent.yaml: file is empty"),
    "huge-integer.yaml": (4, "agent.yaml:4: number 99999999999999999999... is too large"),
    "infinity.yaml": (4, "agent.yaml:4: .inf is not allowed"),
    "invalid-utf8.yaml": (4, "agent.yaml:4: not UTF-8 text (bad byte at offset 52)"),
    "list-document.yaml": (4, "agent.yaml:1: must be a mapping of settings, got a list"),
    "scalar-document.yaml": (4, "agent.yaml:1: must be a mapping of settings, got a string"),
    "local-tag.yaml": (4, "agent.yaml:4: tag !shell is not allowed"),
    "lookalike-key.yaml": (4, "agent.yaml:1: n\u0430me: unknown field (did you mean name?)"),
    "zero-width-key.yaml": (4, "agent.yaml:4: descr\\u200biption: key has the invisible or "
                            "control character U+200B (ZERO WIDTH SPACE)"),
    "merge-key-alias.yaml": (4, "agent.yaml:1: anchor &base is not allowed"),
    "merge-key-inline.yaml": (4, "agent.yaml:4: model.<<: unknown field"),
    "multiple-documents.yaml": (4, "agent.yaml:4: more than one YAML document"),
    "non-string-key.yaml": (4, "agent.yaml:5: key 1 must be a string"),
    "nul-byte.yaml": (4, "agent.yaml: binary file: not YAML text"),
    "utf16-bom.yaml": (4, "agent.yaml: binary file: not YAML text"),
    "utf16-be-no-bom.yaml": (4, "agent.yaml: binary file: not YAML text"),
    "python-name.yaml": (4, "agent.yaml:4: tag tag:yaml.org,2002:python/name:os.system is not"),
    "python-object-apply.yaml": (4, "agent.yaml:4: tag tag:yaml.org,2002:python/object/apply:os"),
    "python-object-map.yaml": (4, "agent.yaml:4: tag tag:yaml.org,2002:python/object:subprocess"),
    "tab-indentation.yaml": (4, "agent.yaml:4: invalid YAML: found character '\\t'"),
    "tag-directive.yaml": (4, "agent.yaml:6: tag tag:example.com,2000:thing is not allowed"),
    "unterminated-quote.yaml": (4, "agent.yaml:5: invalid YAML: found unexpected end of stream"),
    "yaml-directive.yaml": (4, "agent.yaml:6: access: input should be 'private'"),
}

# Too big to keep in git: made on the fly, near the 1 MiB cap.
GENERATED: dict[str, tuple[bytes, int, str]] = {
    "huge-scalar-under-cap.yaml": (
        (HEAD + "description: " + "x" * (MAX_FILE_BYTES - 200) + "\nbogus: 1\n").encode(),
        4, "agent.yaml:5: bogus: unknown field"),
    "huge-scalar-over-cap.yaml": (
        (HEAD + "description: " + "x" * MAX_FILE_BYTES + "\n").encode(),
        4, f"agent.yaml: file is {len(HEAD) + 14 + MAX_FILE_BYTES} bytes, over the cap of "
           f"{MAX_FILE_BYTES}"),
    "huge-key-under-cap.yaml": (
        (HEAD + "k" * (MAX_FILE_BYTES - 100) + ": 1\n").encode(),
        4, "agent.yaml:4: invalid YAML: could not find expected ':'"),
}
LONG_LISTS = {  # every item is a problem: a number where a tag goes
    "list-of-100000-items.yaml": (HEAD + "tags:\n" + "- 1\n" * 100_000).encode(),
    "list-of-262000-items.yaml": (HEAD + "tags:\n" + "- 1\n" * 262_000).encode(),  # 1 MiB
}


def test_corpus_and_table_agree() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.yaml")) == sorted(CORPUS_CASES)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository for the whole corpus: each case gets its own agent directory."""
    path = tmp_path_factory.mktemp("hostile") / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "staging")
    git(path, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q",
        "--allow-empty", "-m", "empty")
    return path


def validate_in_a_process(repo: Path, agent: str, data: bytes) -> tuple[int, str, float, int]:
    """(exit code, output, seconds, peak MB) of `agentstage validate` on one hostile file."""
    directory = write_agent(repo, agent, {})
    (directory / "agent.yaml").write_bytes(data)
    before = (tree_state(repo), git(repo, "status", "--porcelain"),
              sorted(p.name for p in directory.iterdir()))
    started = time.monotonic()
    code, out, megabytes = peak_of([sys.executable, "-m", "agentstage", "-C", str(repo),
                                    "validate", f"agents/{agent}"], cwd=repo)
    seconds = time.monotonic() - started
    after = (tree_state(repo), git(repo, "status", "--porcelain"),
             sorted(p.name for p in directory.iterdir()))
    assert after == before  # nothing written
    assert not (repo / "pwned").exists()
    return code, out, seconds, megabytes


# A small go-between starts the command: Linux carries the peak memory of the process that
# forks into the child's count, and this test process can be large; the go-between is not.
PEAK = ("import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:])\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(f'\\nPEAK-KB={peak}', flush=True)\n"
        "sys.exit(done.returncode)\n")


def peak_of(command: list[str], cwd: Path | None = None) -> tuple[int, str, int]:
    """(exit code, output, peak MB of the command's own process)."""
    done = subprocess.run([sys.executable, "-c", PEAK, *command], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    out, _, peak = done.stdout.decode("utf-8", "replace").rpartition("\nPEAK-KB=")
    return done.returncode, out, int(peak) // 1024


def corpus_agent(name: str) -> str:
    return "h-" + name.removesuffix(".yaml")[:40]


def check_refusal(repo: Path, name: str, data: bytes, code: int, problem: str) -> None:
    agent = corpus_agent(name)
    got, out, seconds, megabytes = validate_in_a_process(repo, agent, data)
    assert got == code, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert "error: " in out
    assert f"agents/{agent}/{problem}" in out, out  # located: the file, its line, the problem
    assert megabytes < MEGABYTES, f"{name}: {megabytes} MB"
    assert seconds < SECONDS, f"{name}: {seconds:.2f} s"


@pytest.mark.parametrize("name", sorted(CORPUS_CASES))
def test_hostile_yaml_is_refused_in_bounded_time_and_memory(sandbox: Path, name: str) -> None:
    code, problem = CORPUS_CASES[name]
    check_refusal(sandbox, name, (CORPUS / name).read_bytes(), code, problem)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_huge_yaml_is_refused_in_bounded_time_and_memory(sandbox: Path, name: str) -> None:
    data, code, problem = GENERATED[name]
    check_refusal(sandbox, name, data, code, problem)


@pytest.mark.parametrize("name", ["list-of-100000-items.yaml", "list-of-262000-items.yaml"])
def test_a_long_list_is_refused_in_bounded_time_and_memory(sandbox: Path, name: str) -> None:
    check_refusal(sandbox, name, LONG_LISTS[name], 4,
                  f"agent.yaml:{MAX_VALUES - 6}: more than {MAX_VALUES} values in one file")


def test_hostile_yaml_committed_to_staging_is_refused_too(run: Any, repo: Path) -> None:
    """The same corpus as blobs at a ref (what the hooks and `show` read)."""
    for name in CORPUS_CASES:
        directory = write_agent(repo, corpus_agent(name), {})
        (directory / "agent.yaml").write_bytes((CORPUS / name).read_bytes())
    commit_all(repo, "hostile")
    before = tree_state(repo)
    result = run("validate", "--ref", "staging", "--format", "json", repo=repo)
    assert result.code == 4, result.err
    by_agent = {r["agent"]: r for r in result.json()["agents"]}
    for name, (_code, problem) in CORPUS_CASES.items():
        agent = corpus_agent(name)
        assert not by_agent[agent]["valid"]
        shown = [f"{p['file']}:{p['line']}: {p['path'] + ': ' if p['path'] else ''}{p['message']}"
                 if p["line"] else f"{p['file']}: {p['message']}"
                 for p in by_agent[agent]["problems"]]
        assert any(problem.removeprefix("agent.yaml") in terminal(s) for s in shown), (
            name, shown)
    for agent in by_agent:
        if agent.startswith("h-"):
            shown = run("show", agent, repo=repo)
            assert shown.code == 4 and "Traceback" not in shown.err, shown.err
    assert tree_state(repo) == before


# -- hostile ids and refs ---------------------------------------------------------------------

BAD_IDS = {
    "empty": "",
    "dot-dot": "a..b",
    "only-dots": "..",
    "at-brace": "a@{1}",
    "at-sign": "@",
    "lock-suffix": "bot.lock",
    "slash": "a/b",
    "trailing-slash": "bot/",
    "leading-dot": ".bot",
    "trailing-dot": "bot.",
    "space": "support bot",
    "control": "bot\x01",
    "newline": "bot\nx",
    "delete": "bot\x7f",
    "tilde": "bot~1",
    "caret": "bot^",
    "colon": "bot:x",
    "question": "bot?",
    "star": "bot*",
    "bracket": "bot[",
    "backslash": "bot\\x",
    "leading-dash": "-bot",
    "upper-case": "Billing-Support",
    "too-long": "a" * 64,
    "traversal": "../x",
    "deep-traversal": "../../etc/passwd",
    "absolute": "/etc",
    "refs-path": "refs/heads/staging",
    "cyrillic-o": "b\u043et",
    "fullwidth": "\uff42\uff4f\uff54",
    "zero-width": "bot\u200b",
    "nbsp": "bot\u00a0",
    "combining": "bo\u0301t",
    "rtl-override": "bot\u202e",
    "underscore": "support_bot",
}

COMMANDS = {
    "show": lambda agent: ("show", "--", agent),
    "diff": lambda agent: ("diff", "--", agent),
    "publish": lambda agent: ("publish", "-m", "x", "--", agent),
    "set": lambda agent: ("set", "--", agent, "model.temperature=0.5"),
    "revert": lambda agent: ("revert", "--", agent, "v1"),
    "restore": lambda agent: ("restore", "--", agent, "v1"),
    "history": lambda agent: ("history", "--", agent),
    "new": lambda agent: ("new", "--name", "X", "--", agent),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hostile_ids_are_refused_with_the_rule(run: Any, repo: Path, command: str) -> None:
    assert run("publish", AGENT, "-m", "v1", repo=repo).code == 0
    before = (tree_state(repo), git(repo, "count-objects"), git(repo, "status", "--porcelain"))
    for label, agent in BAD_IDS.items():
        result = run(*COMMANDS[command](agent), repo=repo)
        assert result.code == 2, (label, result)
        assert result.err.startswith(f"error: invalid agent id {agent!r}"), (label, result.err)
        assert AGENT_ID_RULE in result.err, label
    after = (tree_state(repo), git(repo, "count-objects"), git(repo, "status", "--porcelain"))
    assert after == before


BAD_TAGS = ["v1/../../x", f"{AGENT}/v1/../../x", "../v1", "v0", "v-1", "v1.0", "v1 ", "v",
            "1", "V1", "v1~1", "v1^", "v1:agents", "hr-helpdesk/v1", "refs/heads/staging",
            "v1\n"]


@pytest.mark.parametrize("command", ["revert", "restore", "show"])
def test_hostile_tag_arguments_are_refused(run: Any, repo: Path, command: str) -> None:
    assert run("publish", AGENT, "-m", "v1", repo=repo).code == 0
    assert run("set", AGENT, "model.temperature=0.5", repo=repo).code == 0
    before = tree_state(repo)
    for tag in BAD_TAGS:
        args = ("show", AGENT, "--env", tag) if command == "show" else (command, AGENT, tag)
        result = run(*args, repo=repo)
        assert result.code == 2, (tag, result)
        assert result.err.startswith("error: "), (tag, result.err)
        assert "tag" in result.err
    assert tree_state(repo) == before


@pytest.mark.parametrize("tag", ["v\u00b2", "v\uff11", "v\u0661"])
@pytest.mark.parametrize("command", ["revert", "restore", "show"])
def test_non_ascii_digits_in_a_tag_argument_are_a_usage_error(run: Any, repo: Path,
                                                              command: str, tag: str) -> None:
    assert run("publish", AGENT, "-m", "v1", repo=repo).code == 0
    assert run("set", AGENT, "model.temperature=0.5", repo=repo).code == 0
    before = tree_state(repo)
    args = ("show", AGENT, "--env", tag) if command == "show" else (command, AGENT, tag)
    result = run(*args, repo=repo)
    assert result.code == 2, result
    assert tree_state(repo) == before


@pytest.mark.parametrize("command", [("history",), ("doctor",)])
def test_a_hostile_tag_ref_in_the_repository_is_not_an_internal_error(
        run: Any, repo: Path, command: tuple[str, ...]) -> None:
    assert run("publish", AGENT, "-m", "v1", repo=repo).code == 0
    git(repo, "tag", "-a", f"{AGENT}/v\u00b2", "-m", "not a publish")
    result = run(*command, repo=repo)
    assert "internal error" not in result.err
    if command == ("history",):  # named on stderr, the real publishes shown
        assert result.code == 0 and f"{AGENT}/v1" in result.out, result
        assert f"refs/tags/{AGENT}/v\u00b2" in result.err, result.err
    else:  # a stray name under the agent's tags: a finding with its fix
        assert result.code == 1 and "stray-tag" in result.out, result


def test_case_collisions_refuse_the_upper_case_directory(run: Any, repo: Path) -> None:
    (repo / "agents" / "Billing-Support").mkdir()
    for f in (repo / "agents" / AGENT).iterdir():
        (repo / "agents" / "Billing-Support" / f.name).write_bytes(f.read_bytes())
    commit_all(repo, "an agent that differs only in case")
    before = tree_state(repo)
    for args in (("show", "Billing-Support"), ("publish", "-m", "x", "Billing-Support"),
                 ("set", "Billing-Support", "model.temperature=0.5")):
        result = run(*args, repo=repo)
        assert result.code == 2 and "invalid agent id 'Billing-Support'" in result.err, result
    on_disk = run("validate", repo=repo)  # one more problem; the other agents are checked
    assert on_disk.code == 4
    assert "directory name 'Billing-Support'" in on_disk.out and AGENT_ID_RULE in on_disk.out
    at_ref = run("validate", "--ref", "staging", repo=repo)
    assert at_ref.code == 4 and "directory name 'Billing-Support'" in at_ref.out
    assert run("show", AGENT, repo=repo).code == 0  # the lower-case one is unaffected
    assert tree_state(repo) == before


def test_symlinks_in_an_agent_directory_are_refused(run: Any, repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("- id: leaked\n  text: a secret\n")
    directory = repo / "agents" / AGENT
    (directory / "instructions.yaml").unlink()
    (directory / "instructions.yaml").symlink_to(secret)
    result = run("validate", repo=repo)
    assert result.code == 4
    assert f"agents/{AGENT}/instructions.yaml: symbolic links are not allowed" in result.out
    # committed: git stores the link itself (mode 120000), which the store refuses
    commit_all(repo, "a link in an agent")
    assert git(repo, "ls-tree", "staging", f"agents/{AGENT}/instructions.yaml").startswith(
        "120000")
    before = tree_state(repo)
    for args in (("show", AGENT), ("publish", "-m", "x", AGENT), ("diff", AGENT),
                 ("set", AGENT, "model.temperature=0.5"), ("validate", "--ref", "staging")):
        result = run(*args, repo=repo)
        assert result.code == 4, (args, result)
        assert "symbolic links are not allowed in an agent" in result.err + result.out, args
        assert "leaked" not in result.out + result.err
    assert tree_state(repo) == before


def test_a_symlinked_agent_directory_is_refused(run: Any, repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for f in (repo / "agents" / AGENT).iterdir():
        (outside / f.name).write_bytes(f.read_bytes())
    (repo / "agents" / "linked").symlink_to(outside)
    result = run("validate", repo=repo)
    assert result.code == 4
    assert "agents/linked: an agent directory must not be a symbolic link" in result.out
    commit_all(repo, "a linked agent")
    before = tree_state(repo)
    for args in (("show", "linked"), ("publish", "-m", "x", "linked")):
        result = run(*args, repo=repo)
        assert result.code == 4, (args, result)  # the link is named, never followed
        assert "agents/linked" in result.err and "Traceback" not in result.err
    assert tree_state(repo) == before


def test_memory_limit_is_measured_per_child() -> None:
    """The memory bound above reads the child's own peak, not this process's, however large
    this process has grown."""
    ballast = bytearray(400 * 1024 * 1024)  # noqa: F841 (this process, large)
    code, _out, megabytes = peak_of([sys.executable, "-c", "x = bytearray(64 * 1024 * 1024)"])
    assert code == 0 and 64 <= megabytes < 64 + 60, megabytes


def test_the_corpus_through_the_writing_commands_and_a_real_push(
        run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus as committed files, then `set`, `publish` and a push to a hooked server:
    each is refused with its exit code and nothing changes, here or on the server (the
    earlier checks surround validate and show, which never write)."""
    from conftest import hooked_server

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep
                       + os.environ["PATH"])
    source, server = hooked_server(tmp_path, run)
    for name in CORPUS_CASES:
        directory = write_agent(source, corpus_agent(name), {})
        (directory / "agent.yaml").write_bytes((CORPUS / name).read_bytes())
    commit_all(source, "hostile")
    before, server_before = tree_state(source), tree_state(server)
    # a document that is not a mapping, or declares another YAML version, cannot be edited
    # (usage, 2); the look-alike key file gains its missing name from this very set, which
    # leaves fewer problems and so is taken (tests/test_way_out.py): not run here
    set_codes = {"list-document.yaml": 2, "scalar-document.yaml": 2, "yaml-directive.yaml": 2}
    for name in CORPUS_CASES:
        agent = corpus_agent(name)
        for args in (("set", agent, "name=Fixed?"), ("publish", agent, "-m", "go", "--no-push")):
            if args[0] == "set" and name == "lookalike-key.yaml":
                continue
            done = run(*args, repo=source)
            expected = set_codes.get(name, 4) if args[0] == "set" else 4
            assert done.code == expected, (name, args, done.err)
            assert "internal error" not in done.err and "Traceback" not in done.err, (name, args)
            assert "agent.yaml" in done.err, (name, args, done.err)
    assert tree_state(source) == before
    assert git(source, "status", "--porcelain") == ""
    pushed = subprocess.run(["git", "-C", str(source), "push", "origin", "staging"],
                            capture_output=True, text=True, check=False)
    assert pushed.returncode != 0 and "invalid agent configuration" in pushed.stderr
    assert "internal error" not in pushed.stderr
    assert tree_state(server) == server_before
