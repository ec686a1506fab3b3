"""fastload.py reads without pydantic what is valid: wherever it answers, its answer is
exactly `config.load_agent(...).as_dict()`, and on the generated sections it answers
exactly where the models find no problem (text with a lone surrogate aside). Checked
against the models themselves, on every field's edges and on generated and mutated
configurations."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agentstage import fastload, model
from agentstage.config import load_agent, validate_section
from agentstage.errors import InvalidConfig
from agentstage.model import SECTION_BY_NAME
from agentstage.yamlload import Document
from test_diskcache import strict_equal

SAMPLE = Path(__file__).resolve().parent.parent / "sample-repo" / "agents"

PAIRS: list[tuple[type[BaseModel], fastload.Check]] = [
    (model.ModelSettings, fastload.MODEL_SETTINGS), (model.Settings, fastload.SETTINGS),
    (model.Instruction, fastload.INSTRUCTION), (model.KnowledgeSource, fastload.KNOWLEDGE_SOURCE),
    (model.Action, fastload.ACTION), (model.Tool, fastload.TOOL),
    (model.Guardrail, fastload.GUARDRAIL),
    *[(model.KNOWLEDGE_SETTINGS[k], fastload.KNOWLEDGE_SETTINGS[k])
      for k in model.KNOWLEDGE_SETTINGS],
]


def files_of(agent_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in agent_dir.iterdir() if p.is_file()}


def slow(agent: str, files: dict[str, bytes]) -> dict[str, Any] | None:
    try:
        return load_agent(agent, files).as_dict()
    except InvalidConfig:
        return None


def test_the_fields_are_the_models_in_their_order() -> None:
    for pydantic_model, check in PAIRS:
        fields = pydantic_model.model_fields
        empty = {n: None for n in fields}  # every field present, so none is defaulted
        with pytest.raises(fastload.Unsure):  # an unknown key is refused
            check({**empty, "zz-unknown": 1})
        required = {n for n, f in fields.items() if f.is_required()}
        minimal = _minimal(pydantic_model)
        out = check(minimal)
        assert list(out) == list(fields), pydantic_model.__name__
        assert strict_equal(out, pydantic_model.model_validate(minimal).model_dump(mode="json"))
        for name in required:
            with pytest.raises(fastload.Unsure):
                check({k: v for k, v in minimal.items() if k != name})


def _minimal(pydantic_model: type[BaseModel]) -> dict[str, Any]:
    """The required fields, each with a valid value."""
    values = {"name": "n", "model": {"name": "m"}, "id": "i", "text": "t", "type": "corpus",
              "site_url": "https://a.example", "url": "https://a.example"}
    out = {n: values[n] for n, f in pydantic_model.model_fields.items() if f.is_required()}
    if pydantic_model is model.Guardrail:
        out["type"] = "toxicity"
    return out


@pytest.mark.parametrize("agent", sorted(p.name for p in SAMPLE.iterdir()))
def test_the_sample_agents_load_fast_and_the_same(agent: str) -> None:
    files = files_of(SAMPLE / agent)
    fast = fastload.load_valid(agent, files)
    assert fast is not None  # the ordinary agent never needs pydantic
    expected = slow(agent, files)
    assert expected is not None and strict_equal(fast, expected)


@pytest.mark.parametrize("change", [
    lambda f: f.pop("agent.yaml"),
    lambda f: f.__setitem__(".hidden", b"x: 1\n"),
    lambda f: f.__setitem__("agent.yml", b"x: 1\n"),
    lambda f: f.__setitem__("notes.md", b"# fine\n"),
    lambda f: f.__setitem__("tools.yaml", b"- id: a\n  actions: [{id: x}, {id: x}]\n"),
    lambda f: f.__setitem__("guardrails.yaml", b"- type: toxicty\n"),
    lambda f: f.__setitem__("guardrails.yaml", b"- type: custom-mine\n"),
    lambda f: f.__setitem__("knowledge.yaml", b"- {id: w, type: website, settings: {}}\n"),
    lambda f: f.__setitem__("knowledge.yaml",
                            b"- {id: w, type: website, settings: {url: 'ftp://x'}}\n"),
    lambda f: f.__setitem__("knowledge.yaml",
                            b"- {id: w, type: corpus, settings: {top_k: 0}}\n"),
    lambda f: f.__setitem__("instructions.yaml", b"- {id: a, text: '\\ud800'}\n"),
    lambda f: f.__setitem__("instructions.yaml", b"- {id: 'a\\n', text: x}\n"),
    lambda f: f.__setitem__("instructions.yaml", b"[]\n"),
    lambda f: f.__setitem__("instructions.yaml", b"{}\n"),
    lambda f: f.__setitem__("agent.yaml", b"name: x\nmodel: {name: m, temperature: 2}\n"),
    lambda f: f.__setitem__("agent.yaml", b"name: x\nmodel: {name: m, temperature: 2.01}\n"),
    lambda f: f.__setitem__("agent.yaml", b"name: x\nmodel: {name: m, max_tokens: 1.0}\n"),
    lambda f: f.__setitem__("agent.yaml", b"name: x\nmodel: {name: m, max_tokens: true}\n"),
    lambda f: f.__setitem__("agent.yaml",
                            b"name: x\nmodel: {name: m, parameters: {'a\\u200bb': 1}}\n"),
    lambda f: f.__setitem__("agent.yaml",
                            b"name: x\nmodel: {name: m}\ntags: ['" + b"t" * 65 + b"']\n"),
    lambda f: f.__setitem__("agent.yaml", b"name: ''\nmodel: {name: m}\n"),
    lambda f: f.__setitem__("agent.yaml", b"name: x\nmodel: {name: m}\naccess: secret\n"),
    lambda f: f.__setitem__("agent.yaml", b"name: [x]\nmodel: {name: m}\n"),
    lambda f: f.__setitem__("agent.yaml", b"name: x\nmodel: {name: m}\n"),
])
def test_edges_agree(change: Any) -> None:
    files = files_of(SAMPLE / "billing-support")
    change(files)
    fast = fastload.load_valid("billing-support", files)
    expected = slow("billing-support", files)
    assert fast is None or (expected is not None and strict_equal(fast, expected))


def test_an_agent_id_that_is_not_one_is_left_to_the_models() -> None:
    files = files_of(SAMPLE / "billing-support")
    assert fastload.load_valid("Billing_Support", files) is None
    assert slow("Billing_Support", files) is None


# -- generated: every field right, or wrong in one of many ways ---------------------------

JUNK = st.sampled_from([
    None, True, False, 0, -1, 1, 2, 3, 2.5, -0.0, 0.5, 1.0, 2**63 - 1, -(2**63), "", "a",
    "x" * 65, "bad id", "abc\n", "a\u200bb", "\ud800", "https://", "ftp://x", "http://a b",
    "corpus", "private", "toxicity", [], ["a"], [1], {}, {"k": 1}, {"\u200b": 1},
])
KEY = st.text("abc_-", max_size=3) | st.text(max_size=3)  # the second: hidden characters
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(KEY, inner, max_size=2),
    max_leaves=6)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a right value, sometimes junk."""
    return st.integers(0, 7).flatmap(lambda n: JUNK if n == 0 else good)


GOOD: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["a", "web-search", "A.b:c_d-9", "x" * 128, "x" * 129, "-a"]),
    "string": st.text(max_size=6),
    "nonempty": st.text(min_size=1, max_size=6) | st.just(""),
    "float02": st.sampled_from([0, 1, 2, 0.0, 0.2, 2.0, 1.5, 2.0000001, -0.1]),
    "float01": st.sampled_from([0, 1, 0.5, 0.0, 1.0, 1.01]),
    "int>0": st.integers(-1, 10**6),
    "int>=0": st.integers(-1, 100),
    "bool": st.booleans(),
    "free": st.dictionaries(KEY, JSONISH, max_size=3),
    "tags": st.lists(st.text(min_size=1, max_size=4) | st.sampled_from(
        ["", "t" * 64, "t" * 65, "é" * 64]), max_size=3),
    "strings": st.lists(st.text(max_size=3), max_size=2),
    "url": st.sampled_from(["https://a.example", "http://x/y", "https://", "http://a b"]),
    "access": st.sampled_from(["private", "team", "organization", "public", "secret"]),
    "ktype": st.sampled_from(["corpus", "sharepoint", "website"]),
    "gtype": st.sampled_from([*model.GUARDRAIL_TYPES, "custom-a", "x-b", "custom-", "pii"]),
}


def entry(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping of some of *fields* (each mostly right), sometimes with an unknown key."""
    extra = st.integers(0, 7).flatmap(lambda n: st.fixed_dictionaries(
        {"extra": JUNK} if n == 0 else {}))
    return st.tuples(st.fixed_dictionaries({}, optional={k: maybe(v)
                                                         for k, v in fields.items()}),
                     extra).map(lambda t: {**t[0], **t[1]})


def present(fields: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...]
            ) -> st.SearchStrategy[dict[str, Any]]:
    """Required keys there most of the time, so that many entries are valid."""
    return st.tuples(st.fixed_dictionaries({k: maybe(fields[k]) for k in required}),
                     entry(fields), st.integers(0, 5)).map(
        lambda t: {**t[0], **t[1]} if t[2] else t[1])


MODEL = present({"provider": st.none() | GOOD["string"], "name": GOOD["nonempty"],
                 "temperature": GOOD["float02"], "max_tokens": GOOD["int>0"],
                 "parameters": GOOD["free"]}, ("name",))
SETTINGS = present({"name": GOOD["nonempty"], "description": GOOD["string"], "model": MODEL,
                    "access": GOOD["access"], "tags": GOOD["tags"]}, ("name", "model"))
INSTRUCTION = present({"id": GOOD["id"], "text": GOOD["string"]}, ("id", "text"))
CORPUS = entry({"top_k": GOOD["int>0"], "chunk_size": GOOD["int>0"],
                "chunk_overlap": GOOD["int>=0"], "min_score": GOOD["float01"],
                "metadata_filters": GOOD["free"]})
SHAREPOINT = present({"site_url": GOOD["url"], "library": GOOD["string"],
                      "folder": st.none() | GOOD["string"],
                      "include_subfolders": st.none() | GOOD["bool"],
                      "exclude_folders": GOOD["strings"], "top_k": GOOD["int>0"]},
                     ("site_url",))
WEBSITE = present({"url": GOOD["url"], "crawl_depth": GOOD["int>=0"],
                   "max_pages": GOOD["int>0"], "include_patterns": GOOD["strings"],
                   "exclude_patterns": GOOD["strings"],
                   "refresh_interval_hours": GOOD["int>0"], "top_k": GOOD["int>0"]}, ("url",))
KNOWLEDGE = GOOD["ktype"].flatmap(lambda kind: present(
    {"id": GOOD["id"], "type": st.just(kind), "description": GOOD["string"],
     "settings": {"corpus": CORPUS, "sharepoint": SHAREPOINT, "website": WEBSITE}[kind]},
    ("id", "type")))
ACTION = present({"id": GOOD["id"], "enabled": GOOD["bool"], "description": GOOD["string"],
                  "config": GOOD["free"]}, ("id",))
TOOL = present({"id": GOOD["id"], "enabled": GOOD["bool"], "description": GOOD["string"],
                "config": GOOD["free"], "actions": st.lists(ACTION, max_size=3)}, ("id",))
GUARDRAIL = present({"type": GOOD["gtype"], "enabled": GOOD["bool"],
                     "config": GOOD["free"]}, ("type",))
ENTRIES = {"instructions": INSTRUCTION, "knowledge": KNOWLEDGE, "tools": TOOL,
           "guardrails": GUARDRAIL}
CHECKS = {name: (check, key) for _file, name, check, key in fastload.FILES}


def _has_surrogate(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_surrogate(v) for v in node)
    return isinstance(node, str) and any("\ud800" <= c <= "\udfff" for c in node)


def compare(name: str, data: Any) -> bool:
    """Fast answers exactly when the models find no problem (but for a lone surrogate,
    left to them), and then with their value.
    True when it answered."""
    check, key = CHECKS[name]
    section = SECTION_BY_NAME[name]
    value, problems = validate_section(Document(section.file, data), section)
    try:
        fast = fastload.section(name, check, key, data)
    except fastload.Unsure:
        # the one valid input it leaves to the models on purpose: text with a lone
        # surrogate (pydantic keeps it in a value and replaces it in a key)
        assert problems or _has_surrogate(data), ("valid, but fast gave up", data)
        return False
    assert not problems, (data, problems)
    dumped = [e.model_dump(mode="json") for e in value] if section.is_list \
        else value.model_dump(mode="json")
    assert strict_equal(fast, dumped), (data, fast, dumped)
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=SETTINGS)
@example(data={"name": "a", "description": "\ud800", "model": {"name": "0"}})  # valid: left
def test_generated_settings_agree(data: dict[str, Any]) -> None:                # to the models
    compare("settings", data)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(ENTRIES)), data=st.data())
def test_generated_lists_agree(name: str, data: st.DataObject) -> None:
    entries = data.draw(st.lists(ENTRIES[name], max_size=4))
    if entries and data.draw(st.booleans()):
        entries.append(dict(entries[0]))  # a duplicate id (or type)
    compare(name, entries)


def _vary(rng: random.Random, name: str, data: Any) -> Any:
    """A valid variant of a sample section: values changed within their rules, optional
    fields dropped, entries reordered."""
    data = copy.deepcopy(data)
    if name == "settings":
        model_settings = data["model"]
        model_settings["temperature"] = rng.choice([0, 1, 2, rng.uniform(0, 2)])
        model_settings["max_tokens"] = rng.randint(1, 10**6)
        model_settings["parameters"] = {f"p{i}": rng.choice([1, 0.5, "x", None, [1], {}])
                                        for i in range(rng.randint(0, 3))}
        data["tags"] = [rng.choice(["a", "b-c", "é" * 64]) for _ in range(rng.randint(0, 3))]
        data["access"] = rng.choice(["private", "team", "organization", "public"])
        for key in ("description", "access", "tags"):
            if rng.random() < 0.3:
                data.pop(key)
        if rng.random() < 0.3:
            model_settings.pop("provider", None)
        return data
    rng.shuffle(data)
    for entry in data:
        for key in ("description", "enabled", "config"):
            if key in entry and rng.random() < 0.3:
                entry.pop(key)
        if "enabled" in entry:
            entry["enabled"] = rng.random() < 0.5
        if "text" in entry:
            entry["text"] = rng.choice(["", "x", "line\nline\n", entry["text"]])
        for action in entry.get("actions", []):
            action["enabled"] = rng.random() < 0.5
    return data


def test_valid_variants_of_the_samples_are_answered_fast_and_the_same() -> None:
    """Not vacuous: valid sections are answered (by the rule of `compare`, exactly as the
    models answer), not only refused by both."""
    from agentstage.yamlload import parse_yaml

    rng = random.Random(13)
    sections = [(name, parse_yaml((SAMPLE / agent / file).read_bytes(), file).data)
                for agent in sorted(p.name for p in SAMPLE.iterdir())
                for file, name, _check, _key in fastload.FILES
                if (SAMPLE / agent / file).exists()]
    for _ in range(40):
        for name, data in sections:
            assert compare(name, _vary(rng, name, data))
