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


def agent_dir(agent: str) -> str:
    return f"{AGENTS_DIR}/{agent}"
