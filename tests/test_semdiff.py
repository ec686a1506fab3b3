from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstage.config import load_agent
from agentstage.model import (
    NESTED_KEYS,
    SECTIONS,
    Action,
    AgentConfig,
    Guardrail,
    Instruction,
    KnowledgeSource,
    ModelSettings,
    Settings,
    Tool,
)
from agentstage.semdiff import (
    MISSING,
    SECTION_KEYS,
    SECTION_ORDER,
    Change,
    diff_configs,
    is_order_change,
    same,
    summarize,
    value_at,
)
from agentstage.semdiff import NESTED_KEYS as SEMDIFF_NESTED_KEYS

SAMPLES = Path(__file__).resolve().parents[1] / "sample-repo" / "agents"

BASE: dict[str, Any] = AgentConfig(
    settings=Settings(
        name="Support Bot",
        description="Answers billing questions.",
        model=ModelSettings(provider="openai", name="gpt-4o", temperature=0.2, max_tokens=1024,
                            parameters={"top_p": 0.9, "stop": ["a", "b"]}),
        access="team",
        tags=["billing", "tier-1"],
    ),
    instructions=[Instruction(id="persona", text="You are Support Bot.\nBe concise.\n"),
                  Instruction(id="tone", text="Be kind.")],
    knowledge=[KnowledgeSource(id="billing-faq", type="corpus", settings={"top_k": 5})],
    tools=[
        Tool(id="web-search", actions=[Action(id="search", config={"max_results": 5}),
                                       Action(id="news")]),
        Tool(id="crm", enabled=False),
    ],
    guardrails=[Guardrail(type="pii-redaction", config={"entities": ["email", "phone"]}),
                Guardrail(type="toxicity", config={"threshold": 0.7})],
).as_dict()


def edited(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    edit(config)
    return config


def tool(config: dict[str, Any], ident: str) -> dict[str, Any]:
    return next(t for t in config["tools"] if t["id"] == ident)


def load_sample(agent: str) -> dict[str, Any]:
    files = {p.name: p.read_bytes() for p in (SAMPLES / agent).iterdir()}
    return load_agent(agent, files).as_dict()


def test_sections_match_the_model() -> None:
    assert tuple(s.name for s in SECTIONS) == SECTION_ORDER
    assert {s.name: s.key for s in SECTIONS if s.is_list} == SECTION_KEYS
    assert NESTED_KEYS == SEMDIFF_NESTED_KEYS


@pytest.mark.parametrize("agent", sorted(p.name for p in SAMPLES.iterdir()))
def test_a_sample_against_itself_is_empty(agent: str) -> None:
    config = load_sample(agent)
    assert diff_configs(config, copy.deepcopy(config)) == []


def test_base_against_itself_is_empty() -> None:
    assert diff_configs(BASE, BASE) == []
    assert diff_configs(None, None) == []


def _set(*keys: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        node: Any = config
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return edit


def _delete(*keys: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        node: Any = config
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return edit


def _reverse_all(config: dict[str, Any]) -> None:
    for section in SECTION_KEYS:
        config[section].reverse()
    config["tags"].reverse()
    config["model"]["parameters"]["stop"].reverse()
    config["tools"][-1]["actions"].reverse()  # web-search, now last
    config["guardrails"][-1]["config"]["entities"].reverse()  # pii-redaction, now last


def _add_action(config: dict[str, Any]) -> None:
    tool(config, "web-search")["actions"].append(
        {"id": "images", "enabled": True, "description": "", "config": {}})


ACTION_IMAGES = {"id": "images", "enabled": True, "description": "", "config": {}}
TONE = {"id": "tone", "text": "Be kind."}
CRM = {"id": "crm", "enabled": False, "description": "", "config": {}, "actions": []}
SEARCH = {"id": "search", "enabled": True, "description": "", "config": {"max_results": 5}}


CASES: list[tuple[str, Callable[[dict[str, Any]], object], list[Change]]] = [
    ("top-level field", _set("name", value="Billing Bot"),
     [Change("settings", "name", "modified", "Support Bot", "Billing Bot")]),
    ("nested settings field", _set("model", "temperature", value=0.4),
     [Change("settings", "model.temperature", "modified", 0.2, 0.4)]),
    ("null to a value", _set("model", "provider", value=None),
     [Change("settings", "model.provider", "modified", "openai", None)]),
    ("free-form key added", _set("model", "parameters", "seed", value=7),
     [Change("settings", "model.parameters.seed", "added", None, 7)]),
    ("free-form key removed", _delete("model", "parameters", "top_p"),
     [Change("settings", "model.parameters.top_p", "removed", 0.9, None)]),
    ("free-form key needing quotes", _set("model", "parameters", "a.b c", value=True),
     [Change("settings", 'model.parameters."a.b c"', "added", None, True)]),
    ("key that is not an identifier", _set("model", "parameters", "2fa", value=1),
     [Change("settings", 'model.parameters."2fa"', "added", None, 1)]),
    ("mapping replaced by a scalar", _set("model", "parameters", "stop", value="x"),
     [Change("settings", "model.parameters.stop", "modified", ["a", "b"], "x")]),
    ("list changed: whole value", _set("tags", value=["billing", "tier-2"]),
     [Change("settings", "tags", "modified", ["billing", "tier-1"], ["billing", "tier-2"])]),
    ("same number, int or float", _set("knowledge", 0, "settings", "top_k", value=5.0), []),
    ("bool is not an int", _set("knowledge", 0, "settings", "top_k", value=True),
     [Change("knowledge", "knowledge[billing-faq].settings.top_k", "modified", 5, True)]),
    ("reordering entries, tags and lists: only instructions' order counts", _reverse_all,
     [Change("instructions", "instructions", "modified", ["persona", "tone"],
             ["tone", "persona"])]),
    ("entry added", lambda c: c["instructions"].append({"id": "new", "text": "Hi."}),
     [Change("instructions", "instructions[new]", "added", None, {"id": "new", "text": "Hi."})]),
    ("entry removed", lambda c: c["instructions"].pop(),
     [Change("instructions", "instructions[tone]", "removed", TONE, None)]),
    ("short text changed: no line diff", _set("instructions", 1, "text", value="Be nice."),
     [Change("instructions", "instructions[tone].text", "modified", "Be kind.", "Be nice.")]),
    ("long text changed: line diff",
     _set("instructions", 0, "text", value="You are Support Bot.\nBe brief.\n"),
     [Change("instructions", "instructions[persona].text", "modified",
             "You are Support Bot.\nBe concise.\n", "You are Support Bot.\nBe brief.\n",
             ("@@ -1,2 +1,2 @@", " You are Support Bot.", "-Be concise.", "+Be brief."))]),
    ("one long line changed", _set("instructions", 1, "text", value="x" * 81),
     [Change("instructions", "instructions[tone].text", "modified", "Be kind.", "x" * 81,
             ("@@ -1 +1 @@", "-Be kind.", "+" + "x" * 81))]),
    ("knowledge field", _set("knowledge", 0, "type", value="website"),
     [Change("knowledge", "knowledge[billing-faq].type", "modified", "corpus", "website")]),
    ("tool field", _set("tools", 1, "enabled", value=True),
     [Change("tools", "tools[crm].enabled", "modified", False, True)]),
    ("tool removed", lambda c: c["tools"].pop(),
     [Change("tools", "tools[crm]", "removed", CRM, None)]),
    ("action field", _set("tools", 0, "actions", 0, "enabled", value=False),
     [Change("tools", "tools[web-search].actions[search].enabled", "modified", True, False)]),
    ("action config", _set("tools", 0, "actions", 0, "config", "max_results", value=10),
     [Change("tools", "tools[web-search].actions[search].config.max_results", "modified",
             5, 10)]),
    ("action added", _add_action,
     [Change("tools", "tools[web-search].actions[images]", "added", None, ACTION_IMAGES)]),
    ("action removed", lambda c: c["tools"][0]["actions"].pop(0),
     [Change("tools", "tools[web-search].actions[search]", "removed", SEARCH, None)]),
    ("guardrail field", _set("guardrails", 0, "enabled", value=False),
     [Change("guardrails", "guardrails[pii-redaction].enabled", "modified", True, False)]),
    ("guardrail config list", _set("guardrails", 0, "config", "entities", value=["email"]),
     [Change("guardrails", "guardrails[pii-redaction].config.entities", "modified",
             ["email", "phone"], ["email"])]),
]


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_change(edit: Callable[[dict[str, Any]], object], expected: list[Change]) -> None:
    new = edited(edit)
    assert diff_configs(BASE, new) == expected
    # The other way round, added and removed swap.
    swap = {"added": "removed", "removed": "added", "modified": "modified"}
    back = diff_configs(new, BASE)
    assert [(c.path, swap[c.change], c.staging, c.production) for c in back] == [
        (c.path, c.change, c.production, c.staging) for c in expected]


def test_order_sections_then_new_side_then_removed() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["guardrails"][0]["enabled"] = False
        config["tools"].insert(0, {"id": "maps", "enabled": True, "description": "",
                                   "config": {}, "actions": []})
        config["tools"].pop()  # crm
        config["tools"][1]["enabled"] = False  # web-search
        model = config["model"]
        del model["temperature"]
        config["model"] = {"temperature": 0.5, **model}
        del config["model"]["provider"]
        config["name"] = "New"
    paths = [(c.section, c.path, c.change) for c in diff_configs(BASE, edited(edit))]
    assert paths == [
        ("settings", "name", "modified"),
        ("settings", "model.temperature", "modified"),
        ("settings", "model.provider", "removed"),
        ("tools", "tools[maps]", "added"),
        ("tools", "tools[web-search].enabled", "modified"),
        ("tools", "tools[crm]", "removed"),
        ("guardrails", "guardrails[pii-redaction].enabled", "modified"),
    ]


@pytest.mark.parametrize(("old", "new", "kind"), [(None, BASE, "added"), (BASE, None, "removed")])
def test_agent_absent_on_one_side(old: Any, new: Any, kind: str) -> None:
    changes = diff_configs(old, new)
    assert [(c.section, c.path) for c in changes] == [
        ("settings", "name"), ("settings", "description"), ("settings", "model"),
        ("settings", "access"), ("settings", "tags"),
        ("instructions", "instructions[persona]"), ("instructions", "instructions[tone]"),
        ("knowledge", "knowledge[billing-faq]"),
        ("tools", "tools[web-search]"), ("tools", "tools[crm]"),
        ("guardrails", "guardrails[pii-redaction]"), ("guardrails", "guardrails[toxicity]"),
    ]
    assert {c.change for c in changes} == {kind}
    model = next(c for c in changes if c.path == "model")
    assert (model.production or model.staging) == BASE["model"]


def test_as_json() -> None:
    plain = Change("settings", "name", "modified", "a", "b")
    assert plain.as_json() == {"section": "settings", "path": "name", "change": "modified",
                               "production": "a", "staging": "b"}
    texty = Change("instructions", "instructions[x].text", "modified", "a\n", "b\n",
                   ("@@ -1 +1 @@", "-a", "+b"))
    assert texty.as_json()["text_diff"] == ["@@ -1 +1 @@", "-a", "+b"]


@pytest.mark.parametrize(("changes", "expected"), [
    ([], "no changes"),
    ([Change("tools", "tools[a]", "added", None, {})], "1 change: tools 1"),
    ([Change("tools", "tools[a]", "added", None, {}),
      {"section": "settings", "path": "name", "change": "modified"},
      Change("tools", "tools[b]", "added", None, {})], "3 changes: settings 1, tools 2"),
])
def test_summarize(changes: list[Any], expected: str) -> None:
    assert summarize(changes) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("name", "Support Bot"),
    ("model.temperature", 0.2),
    ("model.parameters.stop", ["a", "b"]),
    ("model.provider", "openai"),
    ("tags", ["billing", "tier-1"]),
    ("instructions[tone].text", "Be kind."),
    ("instructions[tone]", TONE),
    ("tools[web-search].actions[search].config.max_results", 5),
    ("tools[crm].actions", []),
    ("guardrails[toxicity].config.threshold", 0.7),
    ("knowledge[billing-faq].settings.top_k", 5),
    ("model.nope", MISSING),
    ("model.temperature.deeper", MISSING),
    ("instructions[nope].text", MISSING),
    ("tools[web-search].actions[nope]", MISSING),
    ("guardrails[toxicity].config.nope", MISSING),
    ('model."temperature"', 0.2),
    ('model.parameters."2fa"', MISSING),
])
def test_value_at(path: str, expected: Any) -> None:
    found = value_at(BASE, path)
    assert found is MISSING if expected is MISSING else found == expected


def test_value_at_quoted_keys_and_none() -> None:
    config = edited(_set("model", "parameters", "a.b c", value=1))
    assert value_at(config, 'model.parameters."a.b c"') == 1
    assert value_at(None, "name") is MISSING


@pytest.mark.parametrize("path", ["", ".name", "name.", "name..x", "tools[", "tools[]",
                                  "[x]", "a b", "tools[x]y", "model.2fa", "model[x]",
                                  "tags[billing]"])
def test_value_at_rejects_bad_paths(path: str) -> None:
    with pytest.raises(ValueError, match="not a field path"):
        value_at(BASE, path)


def test_samples_against_each_other_resolve() -> None:
    a, b = load_sample("billing-support"), load_sample("hr-helpdesk")
    changes = diff_configs(a, b)
    assert changes
    check_changes_resolve(a, b, changes)


def check_changes_resolve(old: Any, new: Any, changes: list[Change]) -> None:
    assert len({c.path for c in changes}) == len(changes)
    for c in changes:
        before, after = value_at(old, c.path), value_at(new, c.path)
        if c.change == "added":
            assert before is MISSING and after == c.staging and c.production is None
        elif c.change == "removed":
            assert after is MISSING and before == c.production and c.staging is None
        elif is_order_change(c):  # the ids in order on each side
            assert [e["id"] for e in before] == c.production != c.staging
            assert [e["id"] for e in after] == c.staging
        else:
            assert c.change == "modified"
            assert before == c.production and after == c.staging
            assert not same(before, after)


# -- property tests -----------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "top_k", "a.b", "x y", "", "é", "[z]"])
SCALARS = (st.none() | st.booleans() | st.integers(-3, 3)
           | st.floats(-2, 2, allow_nan=False, allow_infinity=False)
           | st.sampled_from(["", "x", "y", "line\nline", "z" * 90]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)
FREE = st.dictionaries(KEYS, JSON, max_size=3)
IDS = st.sampled_from(["a", "b", "c.d", "e:f"])
TEXT = st.sampled_from(["", "x", "Be kind.", "one\ntwo\n", "one\nthree\n", "w" * 85])


def _unique(entry: st.SearchStrategy[dict[str, Any]], key: str) -> Any:
    return st.lists(entry, max_size=3, unique_by=lambda e: e[key])


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    model = {"name": draw(st.sampled_from(["gpt-4o", "m"])),
             "provider": draw(st.none() | st.just("openai")),
             "temperature": draw(st.none() | st.sampled_from([0.2, 0.4, 1.0])),
             "max_tokens": draw(st.none() | st.sampled_from([1, 1024])),
             "parameters": draw(FREE)}
    settings_ = {"name": draw(st.sampled_from(["A", "B"])), "description": draw(TEXT),
                 "model": model, "access": draw(st.sampled_from(["team", "public"])),
                 "tags": draw(st.lists(st.sampled_from(["x", "y", "z"]), max_size=3))}
    action = st.fixed_dictionaries({"id": IDS, "enabled": st.booleans(), "config": FREE})
    tool_ = st.fixed_dictionaries({"id": IDS, "enabled": st.booleans(), "description": TEXT,
                                   "config": FREE, "actions": _unique(action, "id")})
    config = AgentConfig(
        settings=Settings.model_validate(settings_),
        instructions=draw(_unique(st.fixed_dictionaries({"id": IDS, "text": TEXT}), "id")),
        knowledge=draw(_unique(st.fixed_dictionaries(
            {"id": IDS, "type": st.sampled_from(["corpus", "website"]), "settings": FREE}), "id")),
        tools=draw(_unique(tool_, "id")),
        guardrails=draw(_unique(st.fixed_dictionaries(
            {"type": IDS, "enabled": st.booleans(), "config": FREE}), "type")),
    )
    return config.as_dict()


@settings(max_examples=200, deadline=None)
@given(configs(), st.randoms())
def test_a_config_against_itself_or_reordered_is_empty(config: dict[str, Any], rnd: Any) -> None:
    assert diff_configs(config, config) == []
    shuffled = copy.deepcopy(config)
    for section in SECTION_KEYS:
        if section != "instructions":  # their order is the prompt's: a change
            rnd.shuffle(shuffled[section])
    for entry in shuffled["tools"]:
        rnd.shuffle(entry["actions"])
    rnd.shuffle(shuffled["tags"])
    assert diff_configs(config, shuffled) == []


@settings(max_examples=300, deadline=None)
@given(st.none() | configs(), st.none() | configs())
def test_every_change_resolves_to_its_side(old: Any, new: Any) -> None:
    changes = diff_configs(old, new)
    check_changes_resolve(old, new, changes)
    if old is not None and new is not None:
        reordered = [i["id"] for i in old["instructions"]] != [i["id"] for i in new["instructions"]]
        assert (changes == []) == (same(old, new) and not reordered)
    for c in changes:
        long_text = any(isinstance(v, str) and ("\n" in v or len(v) > 80)
                        for v in (c.production, c.staging))
        both_text = isinstance(c.production, str) and isinstance(c.staging, str)
        assert (c.text_diff is not None) == (c.change == "modified" and both_text and long_text)
