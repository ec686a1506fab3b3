"""The review as HTML: the pages of `agentstage serve` and `agentstage diff --format html`.

One Jinja2 environment over the templates in `agentstage/server/templates/` (autoescape on:
every string from the repository is escaped, and shown through the `t` filter, which also
makes control and invisible characters visible), and the view models the templates read:
a diff's changes grouped by section, each value as text, and long texts as a side-by-side
line diff with the changed words marked. Nothing here knows HTTP, so the CLI can render the
same review without importing the server.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentstage.escape import html_text, terminal
from agentstage.layout import SECTION_ORDER
from agentstage.semdiff import FINAL_NEWLINE_ADDED, FINAL_NEWLINE_REMOVED, LONG_TEXT, summarize

if TYPE_CHECKING:
    import jinja2

HERE = Path(__file__).resolve().parent / "server"
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STYLESHEET = STATIC / "agentstage.css"

SECTION_TITLES = {"settings": "Settings", "instructions": "Instructions",
                  "knowledge": "Knowledge", "tools": "Tools", "guardrails": "Guardrails"}
KINDS = {"added": ("+", "added"), "removed": ("−", "removed"), "modified": ("~", "modified")}
CONTEXT = 3  # unchanged lines shown around a change in a line diff
WORD_DIFF_LIMIT = 400  # tokens per line past which a changed line is marked whole
WORD_SIMILARITY = 0.5  # below it (in words), two lines are a rewrite: no words marked
LINE_DIFF_LIMIT = 5000  # lines per side past which the line diff is not computed


# -- values --------------------------------------------------------------------------


def _ambiguous(text: str) -> bool:
    """Whether a bare string would read as something else (a number, a boolean, nothing)."""
    if text == "" or text != text.strip() or text in ("true", "false", "null"):
        return True
    if text[0] in "[{\"'":
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def flow(value: Any) -> str:
    """A compact one-line rendering: strings bare unless that would mislead (`"0.3"` is a
    string, `0.3` a number), mappings and lists in braces and brackets."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if _ambiguous(value) else value
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{flow(str(k))}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def block(value: Any, indent: str = "") -> list[str]:
    """A mapping or list as indented YAML-like lines; long texts as `|` blocks."""
    lines: list[str] = []
    if isinstance(value, Mapping):
        items: Iterable[tuple[str, Any]] = ((flow(str(k)) + ":", v) for k, v in value.items())
    else:
        items = (("-", v) for v in value)
    for head, item in items:
        if isinstance(item, str) and "\n" in item:
            lines.append(f"{indent}{head} |")
            lines += [f"{indent}  {line}" for line in item.rstrip("\n").split("\n")]
        elif isinstance(item, (Mapping, list, tuple)) and item and \
                len(flow(item)) + len(indent) + len(head) > 72:
            lines.append(f"{indent}{head}")
            lines += block(item, indent + "  ")
        else:
            lines.append(f"{indent}{head} {flow(item)}")
    return lines


@dataclass(frozen=True)
class Side:
    """One side of a change: absent, a scalar's text (words marked when both sides are
    short texts), or a mapping or list as indented lines."""

    absent: bool = False
    text: str = ""
    parts: tuple[tuple[str, bool], ...] = ()
    structured: bool = False
    lines: int = 0


def side(value: Any, absent: bool) -> Side:
    if absent:
        return Side(absent=True)
    if isinstance(value, (Mapping, list, tuple)) and value and len(flow(value)) > 60:
        text = "\n".join(block(value))
        return Side(text=text, structured=True, lines=text.count("\n") + 1)
    text = value if isinstance(value, str) and "\n" in value else flow(value)
    return Side(text=text, lines=text.rstrip("\n").count("\n") + 1)


# -- line diffs ------------------------------------------------------------------------


@dataclass(frozen=True)
class LineRow:
    """One row of a side-by-side line diff. kind: same, changed (both sides, words
    marked), removed (old side only), added (new side only), skip (unchanged lines left
    out: *skipped* of them), note (a remark such as a final line break)."""

    kind: str
    old_no: int | None = None
    old: tuple[tuple[str, bool], ...] = ()
    new_no: int | None = None
    new: tuple[tuple[str, bool], ...] = ()
    skipped: int = 0
    note: str = ""


_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)
_WORD = re.compile(r"\w")


def words(old: str, new: str) -> tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]]:
    """Both texts cut into (text, changed) runs: the words that differ are marked."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    if len(a) > WORD_DIFF_LIMIT or len(b) > WORD_DIFF_LIMIT:
        return ((old, True),) if old else (), ((new, True),) if new else ()
    wa, wb = [t for t in a if _WORD.match(t)], [t for t in b if _WORD.match(t)]
    if (wa or wb) and difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio() \
            < WORD_SIMILARITY:  # a rewritten line, not an edited one: no words to mark
        return ((old, False),) if old else (), ((new, False),) if new else ()
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    left: list[tuple[str, bool]] = []
    right: list[tuple[str, bool]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = op != "equal"
        if i2 > i1:
            left.append(("".join(a[i1:i2]), changed))
        if j2 > j1:
            right.append(("".join(b[j1:j2]), changed))
    return _runs(left), _runs(right)


def _runs(parts: list[tuple[str, bool]]) -> tuple[tuple[str, bool], ...]:
    """Adjacent runs of one kind joined; the blanks between two changed words are part of
    the change, so a changed phrase reads as one mark, not a word at a time."""
    for n in range(1, len(parts) - 1):
        text, changed = parts[n]
        if not changed and not text.strip() and parts[n - 1][1] and parts[n + 1][1]:
            parts[n] = (text, True)
    out: list[tuple[str, bool]] = []
    for text, changed in parts:
        if out and out[-1][1] == changed:
            out[-1] = (out[-1][0] + text, changed)
        else:
            out.append((text, changed))
    return tuple(out)


def _split(text: str) -> list[str]:
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines if text else []


def line_diff(old: str, new: str, context: int = CONTEXT) -> list[LineRow]:
    """Side by side: unchanged lines paired, changed lines paired with their words marked,
    long unchanged runs left out but for *context* lines around each change."""
    a, b = _split(old), _split(new)
    if len(a) > LINE_DIFF_LIMIT or len(b) > LINE_DIFF_LIMIT:
        gone = [LineRow("removed", i + 1, ((line, False),)) for i, line in enumerate(a)]
        return gone + [LineRow("added", new_no=i + 1, new=((line, False),))
                       for i, line in enumerate(b)]
    rows: list[list[LineRow]] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            same = [LineRow("same", i1 + k + 1, ((a[i1 + k], False),), j1 + k + 1,
                            ((b[j1 + k], False),)) for k in range(i2 - i1)]
            rows.append(same)
            continue
        pairs = min(i2 - i1, j2 - j1)
        changed = []
        for k in range(pairs):
            left, right = words(a[i1 + k], b[j1 + k])
            changed.append(LineRow("changed", i1 + k + 1, left, j1 + k + 1, right))
        changed += [LineRow("removed", i + 1, ((a[i], False),)) for i in range(i1 + pairs, i2)]
        changed += [LineRow("added", new_no=j + 1, new=((b[j], False),))
                    for j in range(j1 + pairs, j2)]
        rows.append(changed)
    out: list[LineRow] = []
    for n, group in enumerate(rows):
        if not group or group[0].kind != "same":
            out += group
            continue
        head = context if n > 0 else 0
        tail = context if n < len(rows) - 1 else 0
        if len(group) <= head + tail + 1:
            out += group
            continue
        out += group[:head]
        out.append(LineRow("skip", skipped=len(group) - head - tail))
        out += group[len(group) - tail:] if tail else []
    ended, ends = old.endswith("\n"), new.endswith("\n")
    if old and new and ended != ends:
        out.append(LineRow("note", note=FINAL_NEWLINE_ADDED if ends else FINAL_NEWLINE_REMOVED))
    return out


# -- diffs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One changed field as the review shows it."""

    path: str
    kind: str
    marker: str
    word: str
    old: Side
    new: Side
    lines: tuple[LineRow, ...] | None = None


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Review:
    """A diff shape (DESIGN.md section 4) ready for the templates."""

    agent: str
    has_changes: bool
    summary: str
    sections: tuple[Section, ...]
    old_version: int | None
    old_commit: str | None
    new_commit: str | None
    count: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


def _long(value: Any) -> bool:
    return isinstance(value, str) and ("\n" in value or len(value) > LONG_TEXT)


def row(change: Mapping[str, Any]) -> Row:
    kind = str(change.get("change") or "modified")
    marker, word = KINDS.get(kind, ("?", kind))
    old_value, new_value = change.get("production"), change.get("staging")
    old = side(old_value, kind == "added")
    new = side(new_value, kind == "removed")
    lines = None
    if kind != "modified":
        pass
    elif isinstance(old_value, str) and isinstance(new_value, str) and \
            (_long(old_value) or _long(new_value)):
        lines = tuple(line_diff(old_value, new_value))
    elif old.lines == 1 and new.lines == 1 and not (old.structured or new.structured):
        left, right = words(old.text, new.text)
        old, new = Side(text=old.text, parts=left, lines=1), \
            Side(text=new.text, parts=right, lines=1)
    return Row(str(change.get("path")), kind, marker, word, old, new, lines)


def sections(changes: Sequence[Mapping[str, Any]]) -> tuple[Section, ...]:
    groups: dict[str, list[Row]] = {}
    for change in changes:
        groups.setdefault(str(change.get("section")), []).append(row(change))
    order = [s for s in SECTION_ORDER if s in groups] + \
        [s for s in groups if s not in SECTION_ORDER]
    return tuple(Section(s, SECTION_TITLES.get(s, s.capitalize()), tuple(groups[s]))
                 for s in order)


def review(diff: Mapping[str, Any]) -> Review:
    changes = list(diff.get("changes") or [])
    production = diff.get("production") or {}
    staging = diff.get("staging") or {}
    return Review(str(diff.get("agent")), bool(diff.get("has_changes")), summarize(changes),
                  sections(changes), production.get("version"), production.get("commit"),
                  staging.get("commit"), len(changes))


# -- the environment ---------------------------------------------------------------------


def when(stamp: Any) -> str:
    """An ISO time as recorded (its own offset): `2026-11-23 10:15 +01:00`."""
    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return terminal(str(stamp))
    offset = moment.strftime("%z")
    shown = f" {offset[:3]}:{offset[3:]}" if offset else ""
    return moment.strftime("%Y-%m-%d %H:%M") + shown


def _text(value: Any) -> Any:
    from markupsafe import Markup

    return Markup(html_text(str(value)))  # html_text escaped everything


def _plain(value: Any) -> str:
    """For attributes and <title>: invisible characters as escapes, no markup."""
    return terminal(str(value))


def _plural(n: int, noun: str, many: str | None = None) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {many or noun + 's'}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(t=_text, plain=_plain, when=when, short=lambda c: str(c or "")[:7],
                       plural=_plural)
    env.globals.update(section_titles=SECTION_TITLES)
    return env


@lru_cache(maxsize=1)
def stylesheet() -> str:
    return STYLESHEET.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def stylesheet_version() -> str:
    return hashlib.sha256(stylesheet().encode()).hexdigest()[:12]


def render(template: str, **context: Any) -> str:
    context.setdefault("standalone", False)
    return environment().get_template(template).render(**context)


def diff_document(diffs: Sequence[Mapping[str, Any]], sides: tuple[str, str] = (
        "Production", "Staging"), title: str | None = None) -> str:
    """The review of *diffs* as one self-contained page (CSS inline, no links out, no
    script): `agentstage diff --format html`, for CI artifacts."""
    reviews = [review(d) for d in diffs]
    total = sum(r.count for r in reviews)
    heading = title or (f"Review of {reviews[0].agent}" if len(reviews) == 1 else
                        f"Review of {_plural(len(reviews), 'agent')}")
    return render("document.html", standalone=True, css=stylesheet(), reviews=reviews,
                  sides=sides, heading=heading, total=total)


__all__ = ["Review", "Row", "Section", "Side", "block", "diff_document", "environment", "flow",
           "line_diff", "render", "review", "sections", "stylesheet", "when", "words"]
