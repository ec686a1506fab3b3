"""Text from a repository, made safe for where it is shown: one function per medium.

Anything in a repository (names, keys, values, commit and tag messages) may come
from someone the reader does not trust. On a terminal, `terminal` shows every
character that could drive it (C0 and C1 controls, ESC, DEL) or hide or reorder
what is read (zero-width, bidi, tag and other invisible characters) as a visible
escape: `\\x1b`, `\\u202e`, `\\U000e0041`. In markdown (a pull-request comment),
`markdown` puts what is not a plain name into a code span, so no HTML, mention or
link can come out of it, and `md_code` makes a code span of any text.

Backslashes are left as they are, so escaping twice is escaping once: a layer that
escapes what it prints never garbles what a lower layer escaped already.
"""

from __future__ import annotations

import re

# Controls (C0, DEL, C1), surrogates (a lone one cannot even be printed), and the
# characters that show as nothing or reorder the text around them: every format
# character (Unicode category Cf: zero-width, bidi controls, the tag block, soft
# hyphen, ...), the line and paragraph separators, and invisible letters and marks
# (Hangul fillers, the combining grapheme joiner, variation selectors).
_HIDDEN_RANGES = (
    "\x00-\x1f\x7f-\x9f"
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164"
    "\ud800-\udfff\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
_HIDDEN = re.compile(f"[{_HIDDEN_RANGES}]")
_HIDDEN_BUT_NEWLINE = re.compile(f"(?!\n)[{_HIDDEN_RANGES}]")

# A name shown bare in markdown: nothing markdown, HTML or GitHub would turn into
# markup, a mention, an issue reference or a link.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./\[\]-]*")


def _visible(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def hidden(text: str) -> str | None:
    """The first character of *text* that `terminal` would escape (newline included),
    or None: for refusing such characters where they have no business (ids, keys)."""
    match = _HIDDEN.search(text)
    return None if match is None else match.group()


def describe(char: str) -> str:
    """`U+200B` and the character's name, for messages about a hidden character."""
    import unicodedata

    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def terminal(text: str, newlines: bool = False) -> str:
    """*text* safe on a terminal: every control or invisible character shown as an escape.

    With *newlines*, a line feed stays a line feed (a multi-line text meant as such);
    everything else, carriage returns and tabs included, is escaped.
    """
    pattern = _HIDDEN_BUT_NEWLINE if newlines else _HIDDEN
    return pattern.sub(lambda m: _visible(m.group()), text)


def message(text: str) -> str:
    """A message for an `error:`, `hint:` or `warning:` line, which may quote the
    repository (keys, file names, a server's words): escaped as by `terminal`, and its
    own further lines are the indented ones (`  agents/x/agent.yaml:3: ...`); any other
    line break is quoted text, shown escaped, so nothing quoted passes for a line."""
    return re.sub(r"\n(?!  )", r"\\x0a", terminal(text, newlines=True))


def _escape_pipes(line: str) -> str:
    """`|` escaped for a GFM table cell. The table scanner reads `\\` + punctuation as
    one escaped pair, so a pipe after an odd run of backslashes gets one backslash more:
    the cell never splits (the price, one extra backslash shown in that rare case)."""
    def one(match: re.Match[str]) -> str:
        run = match.group(1)
        return run + ("\\" if len(run) % 2 else "") + "\\|"
    return re.sub(r"(\\*)\|", one, line)


def md_code(text: str) -> str:
    """*text* as inline code, safe anywhere in a markdown line, table cells included:
    each line of it its own code span (fenced longer than any backtick run inside),
    joined by `<br>`; controls and invisible characters escaped as on a terminal."""
    parts = []
    for line in terminal(text.replace("\r\n", "\n"), newlines=True).split("\n"):
        if not line:
            parts.append("")
            continue
        run = max((len(m) for m in re.findall(r"`+", line)), default=0)
        fence = "`" * (run + 1)
        pad = " " if (line[0] == "`" or line[-1] == "`"
                      or (line[0] == " " and line[-1] == " " and line.strip())) else ""
        parts.append(f"{fence}{pad}{_escape_pipes(line)}{pad}{fence}")
    return "<br>".join(parts)


def markdown(text: str) -> str:
    """A name from the repository in markdown prose: bare when it is a plain name
    (`support-bot`, `support-bot/v3`, `tools[web].enabled`), else a code span."""
    return text if _PLAIN_NAME.fullmatch(text) and not _autolinked(text) else md_code(text)


def md_html(text: str) -> str:
    """A name inside a raw HTML block of markdown (`<summary>`), where markdown is not
    read: bare when plain, else escaped inside `<code>` (no mention is made in code)."""
    if _PLAIN_NAME.fullmatch(text) and not _autolinked(text):
        return text
    import html  # markdown and pages only: not for the terminal's start-up

    return f"<code>{html.escape(terminal(text), quote=True)}</code>"


def _autolinked(text: str) -> bool:
    return "www." in text.lower()


_HIDDEN_IN_HTML = re.compile(f"(?![\n\t])[{_HIDDEN_RANGES}]")
# Emoji are pictographs joined by U+200D and styled by U+FE0F: between (after) two of
# them, those show as the one emoji they make, and hide nothing a reader must see.
_PICTOGRAPH = re.compile("[\u2190-\u21ff\u2300-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff]")


def _in_emoji(text: str, at: int) -> bool:
    char = text[at]
    before = text[at - 1] if at else ""
    if before == "\ufe0f" and at > 1:  # the joiner after a styled pictograph (❤️‍🔥)
        before = text[at - 2]
    pictured = _PICTOGRAPH.match(before) is not None
    if char == "\ufe0f":
        return pictured
    after = text[at + 1] if at + 1 < len(text) else ""
    return char == "\u200d" and pictured and _PICTOGRAPH.match(after) is not None


def html_text(text: str) -> str:
    """*text* as HTML (a page of the review): every `<`, `&` and quote escaped, and every
    control or invisible character (as `terminal` finds them; line feeds and tabs kept, the
    page lays them out; the joiners inside an emoji kept) shown as its escape in a
    `<span class="esc">`, so a bidi override or a zero-width space cannot hide or reorder
    what a reviewer reads."""
    import html

    out = []
    start = 0
    for match in _HIDDEN_IN_HTML.finditer(text):
        if _in_emoji(text, match.start()):
            continue
        out.append(html.escape(text[start:match.start()], quote=True))
        char = match.group()
        out.append(f'<span class="esc" title="{html.escape(describe(char), quote=True)}">'
                   f"{_visible(char)}</span>")
        start = match.end()
    out.append(html.escape(text[start:], quote=True))
    return "".join(out)


__all__ = ["describe", "hidden", "html_text", "markdown", "md_code", "md_html", "message",
           "terminal"]
