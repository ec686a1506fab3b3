"""What an edit of staging changes, as plans for `api_ops.edit_agent`: the ones the API's
routes and the review page's forms share, so both faces make the same commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentstage.api_ops import Plan, entry_of, entry_path
from agentstage.edit import Edit
from agentstage.errors import Conflict, NotFound

Current = Mapping[str, Any]
SHAREPOINT = "sharepoint"  # the id of an agent's SharePoint folder among its knowledge


def _source(current: Current, kind: str, ident: str, missing: str) -> dict[str, Any]:
    entry = entry_of(current, "knowledge", ident)
    if entry is None or entry.get("type") != kind:
        raise NotFound(missing)
    return entry


def connect_source(kind: str, ident: str, settings: dict[str, Any],
                   description: str | None, *, exists: str, hint: str | None = None) -> Plan:
    """Add the knowledge source *ident* of type *kind*; refused with *exists* when an entry
    of that id is there already."""
    path = entry_path("knowledge", ident)

    def plan(current: Current) -> list[Edit]:
        if entry_of(current, "knowledge", ident) is not None:
            raise Conflict(exists, hint=hint)
        value: dict[str, Any] = {"type": kind, "settings": settings}
        if description is not None:
            value["description"] = description
        return [Edit(path, value)]

    return plan


def update_source(kind: str, ident: str, settings: dict[str, Any], description: str | None,
                  *, missing: str) -> Plan:
    """Replace the settings of the source *ident* of type *kind*, and its description unless
    None; refused with *missing* when there is no such source."""
    def plan(current: Current) -> list[Edit]:
        entry = _source(current, kind, ident, missing)
        edits = [Edit(entry_path("knowledge", ident, "settings"), settings)]
        if description is not None and description != (entry.get("description") or ""):
            edits.append(Edit(entry_path("knowledge", ident, "description"), description))
        return edits

    return plan


def disconnect_source(kind: str, ident: str, *, missing: str) -> Plan:
    """Remove the source *ident* of type *kind*."""
    def plan(current: Current) -> list[Edit]:
        _source(current, kind, ident, missing)
        return [Edit(entry_path("knowledge", ident), remove=True)]

    return plan


FOLDER_MISSING = "no SharePoint folder in this agent on staging"
FOLDER_EXISTS = "the SharePoint folder is connected already"


def connect_folder(settings: dict[str, Any], description: str | None,
                   hint: str | None = None) -> Plan:
    """The agent's SharePoint folder: the knowledge source `sharepoint` of that type."""
    return connect_source(SHAREPOINT, SHAREPOINT, settings, description, exists=FOLDER_EXISTS,
                          hint=hint)


def update_folder(settings: dict[str, Any], description: str | None) -> Plan:
    return update_source(SHAREPOINT, SHAREPOINT, settings, description, missing=FOLDER_MISSING)


def disconnect_folder() -> Plan:
    return disconnect_source(SHAREPOINT, SHAREPOINT, missing=FOLDER_MISSING)


def enable_tool(tool: str) -> Plan:
    """`enabled: true` for *tool*, adding it when absent."""
    edits = [Edit(entry_path("tools", tool, "enabled"), True)]
    return lambda _current: edits
