"""The review's HTML renderer (agentstage.html) without a browser or a server: line diffs,
word marks, values, and escaping of anything a repository may hold."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from agentstage.escape import html_text
from agentstage.html import diff_document, flow, line_diff, review, words


def test_line_diff_keeps_context_and_skips_the_rest() -> None:
    old = "".join(f"line {n}\n" for n in range(40))
    new = old.replace("line 20\n", "line twenty\n")
    rows = line_diff(old, new)
    kinds = [r.kind for r in rows]
    assert kinds == ["skip", "same", "same", "same", "changed", "same", "same", "same", "skip"]
    assert rows[0].skipped == 17 and rows[-1].skipped == 16
    changed = rows[4]
    assert (changed.old_no, changed.new_no) == (21, 21)
    assert changed.old == (("line ", False), ("20", True))
    assert changed.new == (("line ", False), ("twenty", True))


def test_line_diff_added_removed_and_the_final_line_break() -> None:
    rows = line_diff("a\nb\n", "a\nb\nc")
    assert [r.kind for r in rows] == ["same", "same", "added", "note"]
    assert rows[2].new == (("c", False),) and rows[2].old_no is None
    assert "line break removed" in rows[3].note
    assert [r.kind for r in line_diff("a\nb\nc\n", "a\n")] == ["same", "removed", "removed"]


def test_words_marks_edits_but_not_rewrites() -> None:
    left, right = words("Be concise and friendly.", "Be concise, kind and friendly.")
    assert "".join(t for t, _ in left) == "Be concise and friendly."
    assert [t for t, changed in right if changed] == [", kind"]
    assert words("Always confirm the account.", "Refunds take ten days to arrive!") == (
        (("Always confirm the account.", False),), (("Refunds take ten days to arrive!", False),))
    # a changed phrase is one mark, blanks between its words included
    _left, right = words("pay the invoice now", "pay every single open invoice now")
    assert [t for t, changed in right if changed] == ["every single open"]


def test_values_read_as_what_they_are() -> None:
    assert flow("0.3") == '"0.3"' and flow(0.3) == "0.3"
    assert flow("true") == '"true"' and flow(True) == "true"
    assert flow("") == '""' and flow(None) == "null"
    assert flow(["a", "b c"]) == "[a, b c]"
    assert flow({"k": "<b>"}) == "{k: <b>}"


def test_review_groups_sections_in_order_and_kinds_in_words() -> None:
    diff = {"agent": "bot", "has_changes": True, "production": {"version": 2, "commit": "a" * 40},
            "staging": {"commit": "b" * 40}, "changes": [
                {"section": "tools", "path": "tools[x].enabled", "change": "modified",
                 "production": True, "staging": False},
                {"section": "settings", "path": "name", "change": "modified",
                 "production": "Bot", "staging": "Bot 2"},
                {"section": "guardrails", "path": "guardrails[toxicity]", "change": "added",
                 "production": None, "staging": {"type": "toxicity", "enabled": True}},
                {"section": "instructions", "path": "instructions[p].text",
                 "change": "modified", "production": "one\ntwo\n", "staging": "one\n2\n"}]}
    shown = review(diff)
    assert [s.name for s in shown.sections] == ["settings", "instructions", "tools",
                                                "guardrails"]
    added = shown.sections[3].rows[0]
    assert (added.marker, added.word, added.old.absent) == ("+", "added", True)
    assert shown.sections[1].rows[0].lines is not None
    assert shown.sections[0].rows[0].new.parts == (("Bot", False), (" 2", True))
    assert shown.summary == "4 changes: settings 1, instructions 1, tools 1, guardrails 1"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_html_text_never_makes_markup(text: str) -> None:
    out = html_text(text)
    parsed = Tags()
    parsed.feed(out)
    assert all(tag == "span" and attrs[0] == ("class", "esc") for tag, attrs in parsed.tags)
    assert "\u202e" not in out and "\x1b" not in out and "\x00" not in out
    out.encode("utf-8")  # a lone surrogate is shown as its escape, never sent


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1), st.text(min_size=1))
def test_the_document_escapes_whatever_the_values(old: str, new: str) -> None:
    diff = {"agent": "bot", "has_changes": True, "production": {"version": 1, "commit": "c"},
            "staging": {"commit": "d"}, "changes": [
                {"section": "settings", "path": "description", "change": "modified",
                 "production": old, "staging": new},
                {"section": "settings", "path": f"model.parameters.{new!r}", "change": "added",
                 "production": None, "staging": {old: [new]}}]}
    document = diff_document([diff])
    parsed = Tags()
    parsed.feed(document)
    allowed = {"html", "head", "meta", "title", "link", "style", "body", "a", "header", "div",
               "span", "main", "h1", "h2", "h3", "p", "section", "table", "caption",
               "colgroup", "col", "thead", "tbody", "tr", "th", "td", "del", "ins", "footer",
               "code"}
    assert {tag for tag, _ in parsed.tags} <= allowed
    hrefs = [v for _tag, attrs in parsed.tags for k, v in attrs if k in ("href", "src")]
    assert all(v is not None and re.fullmatch(r"#main|data:,", v) for v in hrefs), hrefs
    document.encode("utf-8")
