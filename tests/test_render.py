from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentstage import render

TEXT_DIFF = ["@@ -1,2 +1,2 @@", " You are Support Bot.", "-Be concise.", "+Be brief."]

CHANGES: list[dict[str, Any]] = [
    {"section": "settings", "path": "model.temperature", "change": "modified",
     "production": 0.2, "staging": 0.4},
    {"section": "settings", "path": "tags", "change": "modified",
     "production": ["billing"], "staging": ["billing", "a|b"]},
    {"section": "instructions", "path": "instructions[persona].text", "change": "modified",
     "production": "You are Support Bot.\nBe concise.\n",
     "staging": "You are Support Bot.\nBe brief.\n", "text_diff": TEXT_DIFF},
    {"section": "tools", "path": "tools[crm]", "change": "added",
     "production": None, "staging": {"id": "crm", "enabled": True}},
    {"section": "tools", "path": "tools[web-search].actions[search].enabled",
     "change": "modified", "production": True, "staging": False},
    {"section": "guardrails", "path": "guardrails[toxicity]", "change": "removed",
     "production": {"type": "toxicity", "enabled": True, "config": {}}, "staging": None},
]

DIFF: dict[str, Any] = {
    "agent": "support-bot", "has_changes": True,
    "production": {"commit": "1a2b3c4d5e6f", "version": 3},
    "staging": {"commit": "9f8e7d6c5b4a"},
    "changes": CHANGES,
}

DIFF_TEXT = """\
support-bot: production v3 (1a2b3c4) → staging 9f8e7d6
6 changes: settings 2, instructions 1, tools 2, guardrails 1

settings
  ~ model.temperature                          0.2       → 0.4
  ~ tags                                       [billing] → [billing, a|b]
instructions
  ~ instructions[persona].text                 (2 lines) → (2 lines)
      @@ -1,2 +1,2 @@
       You are Support Bot.
      -Be concise.
      +Be brief.
tools
  + tools[crm]                                 (none)    → {id: crm, enabled: true}
  ~ tools[web-search].actions[search].enabled  true      → false
guardrails
  - guardrails[toxicity]                       {type: toxicity, enabled: true, config: {}} → (none)
"""

DIFF_MARKDOWN = """\
**support-bot**: 6 changes (settings 2, instructions 1, tools 2, guardrails 1)

Production v3 (`1a2b3c4`) → Staging `9f8e7d6`

#### settings

| Field | Production | Staging |
|---|---|---|
| `model.temperature` | `0.2` | `0.4` |
| `tags` | `[billing]` | `[billing, a\\|b]` |

#### instructions

| Field | Production | Staging |
|---|---|---|
| `instructions[persona].text` | *2 lines, diff below* | *2 lines, diff below* |

<details><summary>instructions[persona].text</summary>

```diff
@@ -1,2 +1,2 @@
 You are Support Bot.
-Be concise.
+Be brief.
```

</details>

#### tools

| Field | Production | Staging |
|---|---|---|
| `tools[crm]` | *(none)* | `{id: crm, enabled: true}` |
| `tools[web-search].actions[search].enabled` | `true` | `false` |

#### guardrails

| Field | Production | Staging |
|---|---|---|
| `guardrails[toxicity]` | `{type: toxicity, enabled: true, config: {}}` | *(none)* |
"""


def test_diff_text() -> None:
    assert render.diff_text(DIFF, color=False) == DIFF_TEXT


def test_diff_markdown() -> None:
    assert render.diff_markdown(DIFF) == DIFF_MARKDOWN


def test_json_form_is_plain_json() -> None:
    assert json.loads(json.dumps(DIFF)) == DIFF


@pytest.mark.parametrize(("diff", "expected"), [
    ({**DIFF, "has_changes": False, "changes": []},
     "support-bot: staging is identical to production, nothing to publish\n"),
    ({**DIFF, "changes": []},
     "support-bot: production v3 (1a2b3c4) → staging 9f8e7d6\n"
     "only formatting or comments differ; no field changed\n"),
    ({**DIFF, "production": {"commit": None, "version": None}, "changes": CHANGES[:1]},
     "support-bot: not published → staging 9f8e7d6\n1 change: settings 1\n\nsettings\n"
     "  ~ model.temperature  0.2 → 0.4\n"),
])
def test_diff_text_cases(diff: dict[str, Any], expected: str) -> None:
    assert render.diff_text(diff, color=False) == expected


@pytest.mark.parametrize(("value", "shown"), [
    ("plain words", "plain words"),
    ("", '""'),
    ("true", '"true"'),
    ("0.5", '"0.5"'),
    (" padded", '" padded"'),
    ("(none)", '"(none)"'),
    ("two\nlines", '"two\\nlines"'),
    ("\x1b[31mred", '"\\u001b[31mred"'),
    (None, "null"),
    (5, "5"),
    (["a b", "c, d", ""], '[a b, "c, d", ""]'),
    ({"k": {"x": [1, True]}}, "{k: {x: [1, true]}}"),
    ("x" * 100, "x" * 100),  # cut only to fit a terminal (see test_rough_edges_diff)
])
def test_values_are_compact(value: Any, shown: str) -> None:
    change = {"section": "settings", "path": "description", "change": "modified",
              "production": "old", "staging": value}
    diff = {**DIFF, "changes": [change]}
    last = render.diff_text(diff, color=False).splitlines()[-1]
    assert last == f"  ~ description  old → {shown}"


RENDERERS: list[Callable[[bool], str]] = [
    lambda color: render.diff_text(DIFF, color),
    lambda color: render.publish_text({"agent": "support-bot", "published": True, "version": 4,
                                       "tag": "support-bot/v4", "commit": "abcdef0123",
                                       "previous": "support-bot/v3", "changes": CHANGES}, color),
    lambda color: render.preview_text(PREVIEW, color),
    lambda color: render.history_text(HISTORY, color),
    lambda color: render.agents_text(AGENTS, color),
]


@pytest.mark.parametrize("renderer", RENDERERS)
def test_colour_only_when_asked(renderer: Callable[[bool], str]) -> None:
    plain, coloured = renderer(False), renderer(True)
    assert "\x1b[" not in plain
    assert "\x1b[" in coloured
    assert _strip_ansi(coloured).replace(" ", "") == plain.replace(" ", "")


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_diff_colours_by_kind() -> None:
    out = render.diff_text(DIFF, color=True)
    assert "\x1b[32m+ tools[crm]" in out
    assert "\x1b[31m- guardrails[toxicity]" in out
    assert "\x1b[33m~ model.temperature" in out
    assert "\x1b[32m+Be brief.\x1b[0m" in out
    assert "\x1b[31m-Be concise.\x1b[0m" in out


def test_values_cannot_drive_the_terminal() -> None:
    change = {"section": "instructions", "path": "instructions[x].text", "change": "modified",
              "production": "a\n", "staging": "\x1b[2Jb\n",
              "text_diff": ["@@ -1 +1 @@", "-a", "+\x1b[2Jb"]}
    out = render.diff_text({**DIFF, "changes": [change]}, color=False)
    assert "\x1b" not in out
    assert "+\\x1b[2Jb" in out


@pytest.mark.parametrize(("value", "cell"), [
    ("a|b", "`a\\|b`"),
    ("use `x` here", "``use `x` here``"),
    ("`x`", "`` `x` ``"),
    ("one\ntwo", "`one`<br>`two`"),
    ("<b>hi</b>", "`<b>hi</b>`"),
])
def test_markdown_escaping(value: str, cell: str) -> None:
    change = {"section": "settings", "path": "description", "change": "added",
              "production": None, "staging": value}
    out = render.diff_markdown({**DIFF, "changes": [change]})
    assert f"| `description` | *(none)* | {cell} |" in out


def test_markdown_fence_longer_than_backticks_in_the_text() -> None:
    change = {"section": "instructions", "path": "instructions[x].text", "change": "modified",
              "production": "a\n", "staging": "```\n",
              "text_diff": ["@@ -1 +1 @@", "-a", "+```"]}
    out = render.diff_markdown({**DIFF, "changes": [change]})
    assert "````diff\n@@ -1 +1 @@\n-a\n+```\n````" in out


def _big_diff(agent: str, sections: int = 5, size: int = 8000) -> dict[str, Any]:
    names = ["settings", "instructions", "knowledge", "tools", "guardrails"][:sections]
    changes = [{"section": s, "path": f"{s}[e{i}]" if s != "settings" else f"model.p{i}",
                "change": "added", "production": None, "staging": "v" * 400}
               for s in names for i in range(size // 420)]
    return {**DIFF, "agent": agent, "changes": changes}


def test_diffs_markdown_fits_when_small() -> None:
    out = render.diffs_markdown([DIFF, {**DIFF, "agent": "other"}])
    summary = ("**2 agents changed**: 12 changes (settings 4, instructions 2, tools 4,"
               " guardrails 2)\n\n")
    assert out == summary + DIFF_MARKDOWN + "\n---\n\n" + DIFF_MARKDOWN.replace(
        "support-bot", "other")


def test_diffs_markdown_between_two_revisions() -> None:
    ends = {"production": {"commit": "1a2b3c4d", "version": None},
            "staging": {"commit": "9f8e7d6c"}}
    out = render.diffs_markdown([{**DIFF, **ends}, {**DIFF, **ends, "agent": "other"}],
                                sides=("Base", "Head"))
    assert out.splitlines()[0].endswith(" · Base `1a2b3c4` → Head `9f8e7d6`")
    assert "| Field | Base | Head |" in out
    assert "Production" not in out and "Staging" not in out


def _heads(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("**", "####", "- ", "*Cut"))]


def test_diffs_markdown_shows_every_agent_with_less_detail_and_says_so() -> None:
    diffs = [_big_diff(f"agent-{n}", size=4000) for n in range(12)]
    out = render.diffs_markdown(diffs)
    assert len(out) <= 65000
    count = "45 changes (settings 9, instructions 9, knowledge 9, tools 9, guardrails 9)"
    heads = _heads(out)
    assert heads[0] == ("**12 agents changed**: 540 changes (settings 108, instructions 108,"
                        " knowledge 108, tools 108, guardrails 108)")
    # Every agent is there; the first ones with their tables, the others with paths only.
    assert [h for h in heads if h.startswith("**agent-")] == [
        f"**agent-{n}**: {count}" for n in range(12)]
    full = [n for n in range(12) if f"agent-{n}**: {count}\n\nProduction v3 (`1a2b3c4`) → "
            f"Staging `9f8e7d6`\n\n#### settings" in out]
    assert full == list(range(len(full))) and 1 <= len(full) < 12
    assert f"**agent-{len(full)}**: {count}\n\nProduction v3 (`1a2b3c4`) → Staging `9f8e7d6`" \
           "\n\n**settings**: + `model.p0`, + `model.p1`" in out
    assert heads[-2:] == [
        "*Cut to fit a 65,000-character comment:*",
        f"- values not shown, fields listed only: agent-{len(full)}, agent-{len(full) + 1},"
        f" agent-{len(full) + 2}, agent-{len(full) + 3}, agent-{len(full) + 4}, …"
        f" ({12 - len(full)} agents)",
    ]
    assert out.endswith("Run `agentstage diff` for the whole diff.\n")


def test_diffs_markdown_drops_line_diffs_of_a_huge_text_first() -> None:
    text_diff = ["@@ -1 +1,3000 @@", *(f"+line {n} " + "x" * 40 for n in range(3000))]
    change = {"section": "instructions", "path": "instructions[persona].text",
              "change": "modified", "production": "a\n", "staging": "b\n" * 3000,
              "text_diff": text_diff}
    out = render.diffs_markdown([{**DIFF, "changes": [*CHANGES[:2], change]}])
    assert len(out) <= 65000
    assert "| `instructions[persona].text` | *1 line* | *3000 lines* |" in out
    assert "<details>" not in out
    assert "- line diffs of long texts not shown: support-bot (1 agent)" in out


def test_diffs_markdown_with_too_many_agents_for_one_line_each() -> None:
    diffs = [{**DIFF, "agent": f"agent-{n:04}"} for n in range(3000)]
    out = render.diffs_markdown(diffs)
    assert len(out) <= 65000
    assert out.startswith("**3000 agents changed**: 18000 changes")
    assert "**agent-0000**: 6 changes" in out
    assert re.search(r"- not shown at all: agent-\d+, .* \(\d+ agents\)", out)


def test_diffs_markdown_respects_a_custom_limit() -> None:
    out = render.diffs_markdown([_big_diff("a"), _big_diff("b")], limit=20000)
    assert len(out) <= 20000
    assert "**a**: 95 changes" in out and "**b**: 95 changes" in out


def test_diffs_markdown_counts_as_github_does() -> None:
    wide = {**CHANGES[0], "staging": "\U0001F600" * 400}
    diffs = [{**DIFF, "agent": f"a{n}", "changes": [wide]} for n in range(60)]
    out = render.diffs_markdown(diffs)
    assert render.md_size(out) <= 65000 < render.md_size(out) + 400 * 60


PREVIEW: dict[str, Any] = {
    "agent": "support-bot", "tag": "support-bot/v2", "action": "revert",
    "staging": {**DIFF, "changes": CHANGES[:2]},
    "production": {**DIFF, "changes": CHANGES[3:4]},
    "conflicts": [{"path": "model.name"}],
}


def test_preview_text() -> None:
    assert render.preview_text(PREVIEW, color=False) == """\
support-bot: preview of revert support-bot/v2

In staging (now → after revert):
  settings
    ~ model.temperature  0.2       → 0.4
    ~ tags               [billing] → [billing, a|b]

In production after the next publish:
  tools
    + tools[crm]  (none) → {id: crm, enabled: true}

Conflicts: the revert cannot be applied; these fields were changed since:
  model.name
"""


def test_preview_text_without_changes_or_conflicts() -> None:
    empty = {**DIFF, "has_changes": False, "changes": []}
    preview = {**PREVIEW, "action": "restore", "staging": empty, "production": empty,
               "conflicts": []}
    assert render.preview_text(preview, color=False) == (
        "support-bot: preview of restore support-bot/v2\n\n"
        "In staging (now → after restore):\n  no changes\n\n"
        "In production after the next publish:\n  no changes\n")


def test_preview_markdown() -> None:
    assert render.preview_markdown(PREVIEW) == """\
**support-bot**: preview of revert `support-bot/v2`

**In staging (now → after revert):** 2 changes (settings 2)

#### settings

| Field | Staging now | After revert |
|---|---|---|
| `model.temperature` | `0.2` | `0.4` |
| `tags` | `[billing]` | `[billing, a\\|b]` |

**In production after the next publish:** 1 change (tools 1)

#### tools

| Field | Production now | After the next publish |
|---|---|---|
| `tools[crm]` | *(none)* | `{id: crm, enabled: true}` |

**Conflicts:** the revert cannot be applied; these fields were changed since:

- `model.name`
"""


@pytest.mark.parametrize(("result", "expected"), [
    ({"agent": "support-bot", "published": True, "version": 4, "tag": "support-bot/v4",
      "commit": "abcdef0123", "previous": "support-bot/v3", "changes": CHANGES[:1]},
     "Published support-bot v4 (support-bot/v4) at abcdef0\n1 change: settings 1\n\n"
     "settings\n  ~ model.temperature  0.2 → 0.4\n"),
    ({"agent": "support-bot", "published": False, "has_changes": False},
     "support-bot: staging is identical to production, nothing to publish\n"),
])
def test_publish_text(result: dict[str, Any], expected: str) -> None:
    assert render.publish_text(result, color=False) == expected


HISTORY: list[dict[str, Any]] = [
    {"agent": "support-bot", "version": 3, "tag": "support-bot/v3", "commit": "c3",
     "published_by": {"name": "Bob", "email": "bob@example.org"},
     "published_at": "2026-11-24T09:00:00+00:00", "reason": "Undo the temperature change",
     "previous": "support-bot/v2", "changes": CHANGES[:1], "reverts": ["support-bot/v2"],
     "restores": []},
    {"agent": "support-bot", "version": 2, "tag": "support-bot/v2", "commit": "c2",
     "published_by": {"name": "Ann", "email": "ann@example.org"},
     "published_at": "2026-11-23T10:15:00+01:00", "reason": "r" * 80,
     "previous": "support-bot/v1", "changes": CHANGES, "reverts": [],
     "restores": ["support-bot/v1"]},
]


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("utc")
def test_history_text() -> None:
    assert render.history_text(HISTORY, color=False) == (
        "VERSION         DATE              BY                     CHANGES  REASON\n"
        "support-bot/v3  2026-11-24 09:00  Bob <bob@example.org>  1        "
        "Undo the temperature change (reverts support-bot/v2)\n"
        "support-bot/v2  2026-11-23 09:15  Ann <ann@example.org>  6        "
        + "r" * 59 + "… (restores support-bot/v1)\n")


def test_history_text_empty() -> None:
    assert render.history_text([], color=False) == "no publishes found\n"


AGENTS: list[dict[str, Any]] = [
    {"agent": "support-bot", "name": "Support Bot",
     "production": {"version": 3, "tag": "support-bot/v3", "commit": "c"},
     "staging_differs": True},
    {"agent": "hr", "name": "HR Helpdesk",
     "production": {"version": None, "tag": None, "commit": None}, "staging_differs": True},
    {"agent": "sales", "name": "Sales",
     "production": {"version": 1, "tag": "sales/v1", "commit": "c"}, "staging_differs": False},
]


def test_agents_text() -> None:
    assert render.agents_text(AGENTS, color=False) == (
        "AGENT        NAME         PRODUCTION     STAGING\n"
        "support-bot  Support Bot  v3             changed\n"
        "hr           HR Helpdesk  not published  changed\n"
        "sales        Sales        v1             same\n")
    assert render.agents_text([], color=False) == "no agents found\n"
