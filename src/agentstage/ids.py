"""Agent ids: one rule, checked everywhere an id comes in."""

from __future__ import annotations

import re

from agentstage.errors import UsageError

AGENT_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
AGENT_ID_RULE = (
    "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters"
)


def is_agent_id(value: str) -> bool:
    return AGENT_ID_RE.fullmatch(value) is not None


def suggest_agent_id(value: str) -> str:
    """A valid id made from a bad one (`Support_Bot` -> `support-bot`), for hints."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", plain.lower())
    return "-".join(words)[:63].strip("-") or "support-bot"


def check_agent_id(value: str) -> str:
    """Return *value* if it is a valid agent id, else raise a usage error naming the rule."""
    if not is_agent_id(value):
        raise UsageError(
            f"invalid agent id {value!r}: an agent id is {AGENT_ID_RULE}",
            hint=f"pick an id such as {suggest_agent_id(value)!r}",
        )
    return value
