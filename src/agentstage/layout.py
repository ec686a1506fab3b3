"""The shape of an agent, as plain facts: light enough for any module to import.

model.py builds the pydantic models on these; fieldpath.py and semdiff.py, which
must not pull in pydantic, read them from here.
"""

from __future__ import annotations

SECTION_ORDER = ("settings", "instructions", "knowledge", "tools", "guardrails")
# The list sections and the key that names their entries in a field path.
LIST_KEYS: dict[str, str] = {"instructions": "id", "knowledge": "id", "tools": "id",
                             "guardrails": "type"}
# Lists nested in an entry: (section, field) -> the key naming their entries.
NESTED_KEYS: dict[tuple[str, str], str] = {("tools", "actions"): "id"}
ENTRY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
KEY_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"
AGENTS_DIR = "agents"
DOC_SUFFIXES = (".md", ".txt")  # files an agent may hold beside its YAML


def is_url(value: str) -> bool:
    """An http:// or https:// URL with something after the scheme and no whitespace."""
    return value.startswith(("https://", "http://")) and len(value.split("://", 1)[1]) > 0 \
        and not any(c.isspace() for c in value)


def agent_dir(agent: str) -> str:
    return f"{AGENTS_DIR}/{agent}"


# The guardrail types the product knows; a type of one's own is named custom-<name> (or
# x-<name>, the usual mark of an extension), so
# that a typo of a known type (`toxicty`, `pii`) is caught instead of read as a new one.
GUARDRAIL_TYPES: dict[str, str] = {
    "pii-redaction": "Masks personal data (names, card numbers, IDs...) in messages and logs.",
    "toxicity": "Blocks or flags abusive, hateful or harassing content above a threshold.",
    "topic-restriction": "Keeps the conversation to allowed topics, away from blocked ones.",
    "jailbreak-detection": "Detects attempts to talk the agent out of its instructions.",
    "prompt-injection": "Detects instructions smuggled in through documents or tool output.",
    "self-harm-detection": "Detects self-harm signals and escalates or hands off.",
}
CUSTOM_GUARDRAIL_PREFIXES = ("custom-", "x-")


def guardrail_type_problem(value: str) -> str | None:
    """What is wrong with a guardrail type, or None: known types and custom-<name> (or
    x-<name>) pass."""
    if value in GUARDRAIL_TYPES or any(value.startswith(p) and len(value) > len(p)
                                       for p in CUSTOM_GUARDRAIL_PREFIXES):
        return None
    import difflib

    close = difflib.get_close_matches(value.lower(), list(GUARDRAIL_TYPES), n=1) or [
        t for t in GUARDRAIL_TYPES if len(value) > 1 and t.startswith(value.lower())][:1]
    if close:
        return f"unknown guardrail type {value!r} (did you mean {close[0]}?)"
    return (f"unknown guardrail type {value!r}: expected one of {', '.join(GUARDRAIL_TYPES)}, "
            "or custom-<name> (or x-<name>) for a type of your own")
