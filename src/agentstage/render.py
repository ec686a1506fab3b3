"""Renderers for people: the JSON shapes of DESIGN.md section 4 as terminal text or markdown.

Every function returns a string ending in a newline and prints nothing; the CLI
decides about colour (NO_COLOR, not a terminal) and writes the result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agentstage.escape import hidden, markdown, md_code, md_html, terminal
from agentstage.semdiff import LONG_TEXT, SECTION_ORDER, section_counts, summarize

SHORT = 7
MIN_VALUE_WIDTH = 20  # in a narrow terminal a value still shows this much before it is cut
MD_VALUE_WIDTH = 500  # a value in a markdown table cell is cut past this many characters
PATH_COLUMN = 48
PRODUCTION_COLUMN = 40
ABSENT = "(none)"
ARROW = "→"
MARKERS = {"added": "+", "removed": "-", "modified": "~"}
KIND_STYLE = {"added": "green", "removed": "red", "modified": "yellow"}

_ANSI = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_INNER_AMBIGUOUS = re.compile(r", |: |[\[\]{}]")


# -- small pieces -------------------------------------------------------------------


def _paint(text: str, style: str, color: bool) -> str:
    if not color or not text:
        return text
    return f"\x1b[{_ANSI[style]}m{text}\x1b[0m"


def _clean(text: Any, newlines_ok: bool = False) -> str:
    """Text from the repository, safe on a terminal (see escape.terminal)."""
    return terminal(str(text), newlines=newlines_ok)


def _cut(text: str, width: int | None) -> str:
    """*text* cut to *width* characters with an ellipsis; None: never cut."""
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def _short(commit: Any) -> str:
    return str(commit)[:SHORT] if commit else "?"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ambiguous(text: str, inner: bool, newlines_ok: bool) -> bool:
    if text == "" or text != text.strip() or text in ("true", "false", "null", ABSENT):
        return True
    if ARROW in text or text[0] in "[{\"'":
        return True
    try:
        float(text)
        return True
    except ValueError:
        pass
    body = text.replace("\n", "") if newlines_ok else text
    if hidden(body) is not None:  # "true\u200b" must not read as true
        return True
    return inner and _INNER_AMBIGUOUS.search(text) is not None


def _flow(value: Any, inner: bool = False, newlines_ok: bool = False) -> str:
    """A compact, YAML-flow-like rendering: strings bare unless that would mislead."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        if _ambiguous(value, inner, newlines_ok):
            return json.dumps(value, ensure_ascii=False)
        return value
    if isinstance(value, Mapping):
        items = (f"{_flow(str(k), True)}: {_flow(v, True)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v, True) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _is_long_text(value: Any) -> bool:
    return isinstance(value, str) and ("\n" in value or len(value) > LONG_TEXT)


def _text_lines(text: str) -> int:
    return len(text.rstrip("\n").split("\n"))


def _cells(change: Mapping[str, Any], width: int | None,
           newlines_ok: bool = False) -> tuple[str, str]:
    """The production and staging cells of one change."""
    kind = change.get("change")
    out: list[str] = []
    for side, absent_when in (("production", "added"), ("staging", "removed")):
        value = change.get(side)
        if kind == absent_when:
            out.append(ABSENT)
        elif change.get("text_diff") is not None and _is_long_text(value):
            out.append(f"({_plural(_text_lines(str(value)), 'line')})")
        else:
            out.append(_cut(_clean(_flow(value, newlines_ok=newlines_ok), newlines_ok), width))
    return out[0], out[1]


def _by_section(changes: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for change in changes:
        groups.setdefault(str(change.get("section")), []).append(change)
    order = [s for s in SECTION_ORDER if s in groups]
    order += [s for s in groups if s not in SECTION_ORDER]
    return [(s, groups[s]) for s in order]


def _table(rows: list[list[str]], styles: list[list[str | None]], color: bool) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row, row_styles in zip(rows, styles, strict=True):
        cells = []
        for i, (cell, style) in enumerate(zip(row, row_styles, strict=True)):
            padded = cell if i == len(row) - 1 else cell.ljust(widths[i])
            if style:
                padded = _paint(cell, style, color) + padded[len(cell):]
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    return lines


# -- diffs in a terminal ---------------------------------------------------------------


def _value_width(width: int | None, path_width: int, indent: str) -> int | None:
    """How long a value may be in a line *width* columns wide: the two values share what
    the path leaves; None (not a terminal, or --full): values are never cut."""
    if width is None:
        return None
    taken = len(indent) + 2 + (path_width + 2) + 2 + 1 + len(ARROW) + 1
    return max(MIN_VALUE_WIDTH, (width - taken) // 2)


def _change_lines(changes: Sequence[Mapping[str, Any]], color: bool, indent: str = "",
                  width: int | None = None) -> list[str]:
    """The body of a diff: per section a title, then one line per change (+ text diffs).

    *width* is the terminal's: values are cut so a line fits it; None: nothing is cut."""
    if not changes:
        return [indent + "no changes"]
    paths = [_clean(c.get("path")) for c in changes]
    path_width = max((len(p) for p in paths if len(p) <= PATH_COLUMN), default=0)
    value_width = _value_width(width, path_width, indent)
    # production is cut to its share of the line; staging to what production leaves
    rows = [(p, _cells(c, value_width)[0], _cells(c, None)[1])
            for p, c in zip(paths, changes, strict=True)]
    # Column widths fit the values under the caps; a longer one overflows its line only.
    prod_width = max((len(r[1]) for r in rows if len(r[1]) <= PRODUCTION_COLUMN), default=0)
    cells = {id(c): r for c, r in zip(changes, rows, strict=True)}
    lines: list[str] = []
    for section, items in _by_section(changes):
        lines.append(indent + _paint(_clean(section), "bold", color))
        for change in items:
            path, production, staging = cells[id(change)]
            kind = str(change.get("change"))
            style = KIND_STYLE.get(kind, "yellow")
            head = f"{MARKERS.get(kind, '?')} {path}".ljust(path_width + 2)
            before = f"{indent}  {head}  {production.ljust(prod_width)} {ARROW} "
            if width is not None:
                staging = _cut(staging, max(MIN_VALUE_WIDTH, width - len(before)))
            before = before.replace(head, _paint(head, style, color), 1)
            lines.append(f"{before}{staging}".rstrip())
            for line in change.get("text_diff") or ():
                lines.append(f"{indent}      {_diff_line(str(line), color)}")
    return lines


def _diff_line(line: str, color: bool) -> str:
    shown = _clean(line)
    if line.startswith("+"):
        return _paint(shown, "green", color)
    if line.startswith("-"):
        return _paint(shown, "red", color)
    if line.startswith("@@"):
        return _paint(shown, "cyan", color)
    return shown


def _identical(agent: str) -> str:
    return f"{agent}: staging is identical to production, nothing to publish"


FORMATTING_ONLY = "only formatting or comments differ; no field changed"


PRODUCTION_STAGING = ("production", "staging")


def _sides(diff: Mapping[str, Any], sides: tuple[str, str] = PRODUCTION_STAGING) -> str:
    production = diff.get("production") or {}
    staging = diff.get("staging") or {}
    version, commit = production.get("version"), production.get("commit")
    if version is not None:
        prod = f"{sides[0]} v{version} ({_short(commit)})"
    elif commit:
        prod = f"{sides[0]} {_short(commit)}"
    else:
        prod = "not published" if sides == PRODUCTION_STAGING else f"not in {sides[0]}"
    return _clean(f"{prod} {ARROW} {sides[1]} {_short(staging.get('commit'))}")


def diff_text(diff: Mapping[str, Any], color: bool,
              sides: tuple[str, str] = PRODUCTION_STAGING, width: int | None = None) -> str:
    """One agent's diff; *sides* names the old and new side (base and head for two
    revisions); *width* is the terminal's, None to show every value whole."""
    agent = _clean(diff.get("agent"))
    if not diff.get("has_changes"):
        if sides != PRODUCTION_STAGING:
            return f"{agent}: {sides[1]} is identical to {sides[0]}\n"
        return _identical(agent) + "\n"
    changes = list(diff.get("changes") or [])
    lines = [f"{_paint(agent, 'bold', color)}: {_sides(diff, sides)}"]
    if not changes:
        return "\n".join([*lines, FORMATTING_ONLY]) + "\n"
    lines += [_clean(summarize(changes)), "", *_change_lines(changes, color, width=width)]
    return "\n".join(lines) + "\n"


def publish_text(result: Mapping[str, Any], color: bool, width: int | None = None) -> str:
    agent = _clean(result.get("agent"))
    if not result.get("published") and not result.get("dry_run"):
        return _identical(agent) + "\n"
    verb = "Would publish" if result.get("dry_run") else "Published"
    if result.get("retired"):
        verb = "Would retire" if result.get("dry_run") else "Retired"
    where = "from" if result.get("dry_run") else "at"
    title = (f"{verb} {_paint(agent, 'bold', color)} v{_clean(result.get('version'))}"
             f" ({_clean(result.get('tag'))}) {where} {_clean(_short(result.get('commit')))}")
    changes = list(result.get("changes") or [])
    if not changes:
        return f"{title}\n{FORMATTING_ONLY}\n"
    return "\n".join([title, _clean(summarize(changes)), "",
                      *_change_lines(changes, color, width=width)]) + "\n"


def preview_text(preview: Mapping[str, Any], color: bool, width: int | None = None) -> str:
    agent = _clean(preview.get("agent"))
    action = _clean(preview.get("action") or "revert")
    lines = [f"{_paint(agent, 'bold', color)}: preview of {action} {_clean(preview.get('tag'))}",
             ""]
    blocks = (("staging", f"In staging (now {ARROW} after {action}):"),
              ("production", "In production after the next publish:"))
    conflicts = list(preview.get("conflicts") or [])
    for key, title in blocks:
        diff = preview.get(key) or {}
        lines.append(_paint(title, "bold", color))
        if not diff.get("changes") and conflicts:
            lines.append(f"  nothing would be applied: the {action} conflicts (below)")
        elif not diff.get("has_changes") and not diff.get("changes"):
            lines.append("  no changes")
        elif not diff.get("changes"):
            lines.append("  " + FORMATTING_ONLY)
        else:
            lines += _change_lines(list(diff["changes"]), color, indent="  ", width=width)
        lines.append("")
    if conflicts:
        lines.append(_paint(f"Conflicts: the {action} cannot be applied;"
                            " these fields were changed since:", "red", color))
        each = None if width is None else max(MIN_VALUE_WIDTH, width // 3)
        lines += [f"  {_conflict_line(c, preview, each)}" for c in conflicts]
        lines.append("")
    return "\n".join(lines[:-1]) + "\n"


def _conflict_line(clash: Mapping[str, Any], preview: Mapping[str, Any],
                   width: int | None) -> str:
    """`path: vN set X, staging now has Y`, values escaped (markdown escapes the line)."""
    path = _clean(clash.get("path"))
    if "staging" not in clash:
        return path
    version = _clean(str(preview.get("tag") or "").rpartition("/")[2] or "the publish")

    def shown(key: str) -> str:
        if clash.get(f"{key}_absent"):
            return ABSENT
        return _cut(_clean(_flow(clash.get(key))), width)

    return f"{path}: {version} set {shown('published')}, staging now has {shown('staging')}"


# -- tables ---------------------------------------------------------------------------


def _local_minute(stamp: Any) -> str:
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return _clean(stamp)
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def signature_text(signature: Any) -> str:
    """A history entry's signature in a few words: `(signed by alice@x)`, with what is
    wrong when it does not verify, or `(signed by KEY, not checked)`."""
    if not isinstance(signature, Mapping):
        return ""
    reason = _cut(_clean(signature.get("reason") or ""), 80)
    if not signature.get("signed"):
        return f"UNSIGNED: {reason}" if signature.get("verified") is False else ""
    signer = _cut(_clean(signature.get("signer") or "an unknown key"), 60)
    if signature.get("verified") is True:
        return f"(signed by {signer})"
    if signature.get("verified") is False:
        return f"BAD SIGNATURE by {signer}: {reason}"
    return f"(signed by {signer}, not checked)"  # the JSON says why


def history_text(entries: Sequence[Mapping[str, Any]], color: bool) -> str:
    if not entries:
        return "no publishes found\n"
    rows = [["VERSION", "DATE", "BY", "CHANGES", "REASON"]]
    styles: list[list[str | None]] = [["bold"] * 5]
    for entry in entries:
        who = entry.get("published_by") or {}
        by = f"{who.get('name', '')} <{who.get('email', '')}>"
        reason = _cut(_clean(str(entry.get("reason") or "").split("\n")[0]), 60)
        marks = [f"({word} {_clean(', '.join(map(str, entry[key])))})"
                 for key, word in (("reverts", "reverts"), ("restores", "restores"))
                 if entry.get(key)]
        if entry.get("retired"):
            marks.append("(retired)")
        if entry.get("verified") is False:
            marks.insert(0, "UNVERIFIED: " + _cut(_clean("; ".join(
                map(str, entry.get("problems") or []))), 80))
        signed = signature_text(entry.get("signature"))
        if signed:
            marks.append(signed)
        reason = " ".join([reason, *marks]).strip()
        by = _cut(_clean(by), 40)
        pushed = entry.get("pushed_by")
        email = str(who.get("email", ""))
        if pushed and str(pushed).casefold() not in {
                str(who.get("name", "")).casefold(), email.casefold(),
                email.partition("@")[0].casefold()}:
            by += f" (pushed by {_cut(_clean(str(pushed)), 24)})"
        rows.append([_clean(entry.get("tag")), _local_minute(entry.get("published_at")),
                     by, str(len(entry.get("changes") or [])), reason])
        styles.append(["yellow", None, None, None, None])
    return "\n".join(_table(rows, styles, color)) + "\n"


def agents_text(rows: Sequence[Mapping[str, Any]], color: bool) -> str:
    if not rows:
        return "no agents found\n"
    table = [["AGENT", "NAME", "PRODUCTION", "STAGING"]]
    styles: list[list[str | None]] = [["bold"] * 4]
    for row in rows:
        version = (row.get("production") or {}).get("version")
        differs = bool(row.get("staging_differs"))
        production = "not published" if version is None else f"v{_clean(version)}"
        if row.get("retired"):
            production = f"retired (v{_clean(version)})"
        table.append([_clean(row.get("agent")), _cut(_clean(row.get("name") or ""), 40),
                      production, "changed" if differs else
                      ("-" if row.get("retired") else "same")])
        styles.append([None, None, None if version is not None else "dim",
                       "yellow" if differs else None])
    return "\n".join(_table(table, styles, color)) + "\n"


# -- markdown --------------------------------------------------------------------------


def _md_code(text: Any) -> str:
    """Inline code safe in a table cell (see escape.md_code)."""
    return md_code(str(text))


def _md_cell(change: Mapping[str, Any], side: str, text_diffs: bool = True) -> str:
    production, staging = _cells(change, MD_VALUE_WIDTH, newlines_ok=True)
    shown = production if side == "production" else staging
    if shown == ABSENT:
        return f"*{ABSENT}*"
    value = change.get(side)
    if change.get("text_diff") is not None and _is_long_text(value):
        return f"*{shown[1:-1]}, diff below*" if text_diffs else f"*{shown[1:-1]}*"
    return _md_code(shown)


def _md_fence(lines: Sequence[str]) -> str:
    run = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, run + 1)


def _md_section(section: str, changes: Sequence[Mapping[str, Any]],
                columns: tuple[str, str] = ("Production", "Staging"),
                text_diffs: bool = True) -> str:
    out = [f"#### {markdown(section)}", "", f"| Field | {columns[0]} | {columns[1]} |",
           "|---|---|---|"]
    for change in changes:
        out.append(f"| {_md_code(change.get('path'))}"
                   f" | {_md_cell(change, 'production', text_diffs)}"
                   f" | {_md_cell(change, 'staging', text_diffs)} |")
    for change in changes if text_diffs else ():
        text_diff = [_clean(str(line)) for line in change.get("text_diff") or ()]
        if change.get("text_diff") is None:
            continue
        fence = _md_fence(text_diff)
        out += ["", f"<details><summary>{md_html(str(change.get('path')))}</summary>", "",
                f"{fence}diff", *text_diff, fence, "", "</details>"]
    return "\n".join(out)


def _md_fields(section: str, changes: Sequence[Mapping[str, Any]]) -> str:
    """A section as the list of its changed fields, without values (a comment cut to fit)."""
    items = (f"{MARKERS.get(str(c.get('change')), '?')} {_md_code(c.get('path'))}"
             for c in changes)
    return f"**{markdown(section)}**: " + ", ".join(items)


def _md_count(changes: Sequence[Mapping[str, Any]]) -> str:
    counts = ", ".join(f"{markdown(s)} {n}" for s, n in section_counts(changes))
    return f"{_plural(len(changes), 'change')} ({counts})"


def _md_sides(diff: Mapping[str, Any], sides: tuple[str, str] = ("Production", "Staging")) -> str:
    production = diff.get("production") or {}
    staging = diff.get("staging") or {}
    version, commit = production.get("version"), production.get("commit")
    if version is not None:
        prod = f"{sides[0]} v{markdown(str(version))} ({_md_code(_short(commit))})"
    elif commit:
        prod = f"{sides[0]} {_md_code(_short(commit))}"
    else:
        prod = f"{sides[0]}: not published"
    return f"{prod} {ARROW} {sides[1]} {_md_code(_short(staging.get('commit')))}"


# How much of one agent a comment shows, most first: tables and text diffs; tables;
# the changed fields' paths; the agent's summary line only.
FULL, TABLES, FIELDS, HEAD = range(4)
LEVEL_CUTS = {TABLES: "line diffs of long texts not shown",
              FIELDS: "values not shown, fields listed only",
              HEAD: "fields not listed"}


def _md_agent(diff: Mapping[str, Any], level: int = FULL,
              sides: tuple[str, str] = ("Production", "Staging")) -> str:
    """One agent's markdown diff, shown down to *level*."""
    agent = f"**{markdown(str(diff.get('agent')))}**"
    if not diff.get("has_changes"):
        if sides == ("Production", "Staging"):
            return f"{agent}: staging is identical to production, nothing to publish"
        return f"{agent}: {sides[1].lower()} is identical to {sides[0].lower()}"
    changes = list(diff.get("changes") or [])
    if not changes:
        return f"{agent}: {FORMATTING_ONLY}\n\n{_md_sides(diff, sides)}"
    head = f"{agent}: {_md_count(changes)}"
    if level == HEAD:
        return head
    parts = [head, _md_sides(diff, sides)]
    for section, items in _by_section(changes):
        if level == FIELDS:
            parts.append(_md_fields(section, items))
        else:
            parts.append(_md_section(section, items, sides, text_diffs=level == FULL))
    return "\n\n".join(parts)


def diff_markdown(diff: Mapping[str, Any]) -> str:
    return _md_agent(diff) + "\n"


AGENT_SEPARATOR = "\n\n---\n\n"
FOOTER_RESERVE = 1500
NAMES_SHOWN = 5


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(markdown(name) for name in names[:NAMES_SHOWN])
    return shown + (", …" if len(names) > NAMES_SHOWN else "")


def md_size(text: str) -> int:
    """Length as GitHub counts a comment: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _md_summary(diffs: Sequence[Mapping[str, Any]], sides: tuple[str, str]) -> str:
    changed = [d for d in diffs if d.get("has_changes")]
    changes = [c for d in changed for c in d.get("changes") or []]
    line = f"**{_plural(len(changed), 'agent')} changed**"
    if changes:
        line += f": {_md_count(changes)}"
    if len(changed) < len(diffs):
        line += f"; {len(diffs) - len(changed)} identical"
    ends = {(str((d.get("production") or {}).get("commit")), str((d.get("staging") or {})
             .get("commit"))) for d in diffs}
    if len(ends) == 1 and all((d.get("production") or {}).get("version") is None for d in diffs):
        line += f" · {_md_sides(diffs[0], sides)}"
    return line


def diffs_markdown(diffs: Sequence[Mapping[str, Any]], limit: int = 65000, *,
                   sides: tuple[str, str] = ("Production", "Staging"),
                   rerun: str = "agentstage diff") -> str:
    """Several agents in one comment: a summary line, then each agent; cut to *limit*.

    Under the limit every agent and field is shown. Over it, agents are shown with
    less detail, all alike first (no line diffs, then paths only, then one line each),
    then the first agents get back what still fits; a note says what was cut.
    """
    if not diffs:
        return "No agent differs.\n"
    summary = _md_summary(diffs, sides) if len(diffs) > 1 else ""
    head = summary + "\n\n" if summary else ""

    def join(blocks: Sequence[str]) -> str:
        return head + AGENT_SEPARATOR.join(blocks)

    full = [_md_agent(d, FULL, sides) for d in diffs]
    out = join(full) + "\n"
    if md_size(out) <= limit:
        return out
    budget = max(limit - FOOTER_RESERVE, 0)
    cache: dict[tuple[int, int], int] = {}

    def size(index: int, level: int) -> int:
        if (index, level) not in cache:
            cache[index, level] = md_size(_md_agent(diffs[index], level, sides))
        return cache[index, level]

    gap = md_size(AGENT_SEPARATOR)
    levels = [HEAD] * len(diffs)
    for level in (TABLES, FIELDS, HEAD):
        if md_size(head) + sum(size(i, level) + gap for i in range(len(diffs))) <= budget:
            levels = [level] * len(diffs)
            break
    used = md_size(head) + sum(size(i, lv) + gap for i, lv in enumerate(levels))
    shown = len(diffs)
    while used > budget and shown:  # even one line per agent is too much: drop the last ones
        shown -= 1
        used -= size(shown, HEAD) + gap
    for i in range(shown):  # give the first agents back what fits
        for level in range(FULL, levels[i]):
            extra = size(i, level) - size(i, levels[i])
            if used + extra <= budget:
                levels[i], used = level, used + extra
                break
    blocks = [_md_agent(diffs[i], levels[i], sides) for i in range(shown)]
    cut: dict[int, list[str]] = {}
    for i, level in enumerate(levels[:shown]):
        if level != FULL and size(i, level) != md_size(full[i]):
            cut.setdefault(level, []).append(str(diffs[i].get("agent")))
    notes = [f"- {what}: {_names(cut[level])} ({_plural(len(cut[level]), 'agent')})"
             for level, what in LEVEL_CUTS.items() if level in cut]
    if shown < len(diffs):
        rest = [str(d.get("agent")) for d in diffs[shown:]]
        notes.append(f"- not shown at all: {_names(rest)} ({_plural(len(rest), 'agent')})")
    footer = (f"*Cut to fit a {limit:,}-character comment:*\n\n" + "\n".join(notes)
              + f"\n\nRun {_md_code(rerun)} for the whole diff.")
    out = join(blocks) + "\n\n" + footer + "\n"
    return out if md_size(out) <= limit else _md_cut(out, limit)


def _md_cut(text: str, limit: int) -> str:
    """*text* cut to whole lines within *limit*: a code span cut in half would let what
    follows it be read as markdown."""
    cut = text[: max(limit - 2, 0)]
    while md_size(cut) > max(limit - 2, 0):
        cut = cut[: -max(1, (md_size(cut) - limit) // 2)]
    return cut[: cut.rfind("\n") + 1] + "…\n"


def preview_markdown(preview: Mapping[str, Any]) -> str:
    agent = markdown(str(preview.get("agent")))
    action = markdown(str(preview.get("action") or "revert"))
    out = [f"**{agent}**: preview of {action} {_md_code(preview.get('tag'))}"]
    blocks = (("staging", f"In staging (now {ARROW} after {action})",
               ("Staging now", f"After {action}")),
              ("production", "In production after the next publish",
               ("Production now", "After the next publish")))
    conflicts = list(preview.get("conflicts") or [])
    for key, title, columns in blocks:
        diff = preview.get(key) or {}
        changes = list(diff.get("changes") or [])
        if not changes and conflicts:
            out.append(f"**{title}:** nothing would be applied: the {action} conflicts")
            continue
        if not changes:
            what = FORMATTING_ONLY if diff.get("has_changes") else "no changes"
            out.append(f"**{title}:** {what}")
            continue
        out.append(f"**{title}:** {_md_count(changes)}")
        out += [_md_section(s, items, columns) for s, items in _by_section(changes)]
    if conflicts:
        out.append(f"**Conflicts:** the {action} cannot be applied;"
                   " these fields were changed since:\n\n"
                   + "\n".join(f"- {_md_code(_conflict_line(c, preview, MD_VALUE_WIDTH))}"
                                for c in conflicts))
    return "\n\n".join(out) + "\n"


__all__ = [
    "agents_text",
    "diff_markdown",
    "diff_text",
    "diffs_markdown",
    "history_text",
    "preview_markdown",
    "preview_text",
    "publish_text",
]
