"""Editing staging in the browser (DESIGN.md section 9): one page of forms for an agent's
settings, instructions, knowledge (corpora), tools and actions, and guardrails. Each save is
one commit through the operation the API's edit routes use (`api_ops.edit_agent`), with
the agent's ETag the page showed as If-Match: a save that lost to someone else's edit of the
same agent shows both versions instead of overwriting; any other refusal shows why, with
what was typed kept in its form.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from agentstage import api_ops, plans
from agentstage.api_ops import entry_of, entry_path
from agentstage.edit import Edit
from agentstage.errors import AgentstageError, Conflict, NotFound, UsageError
from agentstage.fieldpath import Entry, Key
from agentstage.server.auth import PageReaderDep, StoreDep, check_editor, powers
from agentstage.server.page_base import PageRoute, page, problem
from agentstage.server.page_session import FormDep, PosterDep, redirect
from agentstage.server.responses import one_writer
from agentstage.store import Store

router = APIRouter(route_class=PageRoute, include_in_schema=False)
ACCESS = ("private", "team", "organization", "public")
Current = Mapping[str, Any]
Planner = Callable[[dict[str, str]], tuple[api_ops.Plan, str]]


def pretty(value: Any) -> str:
    """A JSON value as the textareas show it."""
    return "" if value in (None, {}) else json.dumps(value, indent=2, ensure_ascii=False)


def _json(form: dict[str, str], name: str, label: str) -> dict[str, Any] | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{label} is not JSON: {exc}",
                         hint='write an object, e.g. {"top_k": 5}, or leave it empty') from None
    if not isinstance(value, dict):
        raise UsageError(f"{label} must be a JSON object ({{...}})")
    return value


def _number(form: dict[str, str], name: str, kind: type[int] | type[float]
            ) -> int | float | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{name.replace('_', ' ')} must be a number, not {text!r}") from None


def _need(current: Current, section: str, ident: str, what: str) -> dict[str, Any]:
    entry = entry_of(current, section, ident)
    if entry is None:
        raise NotFound(f"no {what} {ident!r} in this agent on staging",
                       hint="someone may have removed it: load the page again")
    return entry


# -- what each form changes --------------------------------------------------------------


def settings_plan(form: dict[str, str]) -> tuple[api_ops.Plan, str]:
    tags = [t.strip() for t in form.get("tags", "").split(",") if t.strip()]
    access = form.get("access", "")
    if access not in ACCESS:
        raise UsageError(f"access must be one of {', '.join(ACCESS)}, not {access!r}")
    wanted: dict[tuple[str, ...], Any] = {
        ("name",): form.get("name", "").strip(),
        ("description",): form.get("description", "").strip() or None,
        ("access",): access,
        ("tags",): tags or None,
        ("model", "provider"): form.get("provider", "").strip() or None,
        ("model", "name"): form.get("model", "").strip(),
        ("model", "temperature"): _number(form, "temperature", float),
        ("model", "max_tokens"): _number(form, "max_tokens", int),
        ("model", "parameters"): _json(form, "parameters", "the model's parameters"),
    }

    def plan(current: Current) -> list[Edit]:
        edits = []
        for path, value in wanted.items():
            here: Any = current
            for key in path:
                here = here.get(key) if isinstance(here, dict) else None
            if value != here and not (value is None and here in (None, {}, [], "")):
                edits.append(Edit(tuple(Key(k) for k in path), value, remove=value is None))
        return edits

    return plan, "settings"


def instruction_plan(form: dict[str, str]) -> tuple[api_ops.Plan, str]:
    ident, op = form.get("id", ""), form.get("op", "save")
    api_ops.check_entry_id("instruction", ident)
    text = form.get("text", "")

    def plan(current: Current) -> list[Edit]:
        if op == "add":
            if entry_of(current, "instructions", ident) is not None:
                raise Conflict(f"instruction {ident!r} exists already",
                               hint="pick another id, or edit that one")
            return [Edit(entry_path("instructions", ident), {"text": text})]
        _need(current, "instructions", ident, "instruction")
        if op == "save":
            return [Edit(entry_path("instructions", ident, "text"), text)]
        if op == "remove":
            return [Edit(entry_path("instructions", ident), remove=True)]
        items = list(current.get("instructions") or [])
        at = next(n for n, i in enumerate(items) if isinstance(i, dict) and i.get("id") == ident)
        to = at - 1 if op == "up" else at + 1 if op == "down" else None
        if to is None:
            raise UsageError(f"unknown instruction action {op!r}")
        if not 0 <= to < len(items):
            return []
        items[at], items[to] = items[to], items[at]
        return [Edit((Key("instructions"),), items)]

    verbs = {"add": "add", "save": "edit", "remove": "remove", "up": "move up",
             "down": "move down"}
    return plan, f"{verbs.get(op, op)} instruction {ident}"


def corpus_plan(form: dict[str, str]) -> tuple[api_ops.Plan, str]:
    ident, op = form.get("id", ""), form.get("op", "save")
    api_ops.check_entry_id("corpus", ident)
    description = form.get("description", "").strip()
    settings = _json(form, "settings", "the corpus settings")

    def plan(current: Current) -> list[Edit]:
        entry = entry_of(current, "knowledge", ident)
        if op == "connect":
            if entry is not None:
                raise Conflict(f"knowledge source {ident!r} is connected already",
                               hint="change its settings in its own form")
            value: dict[str, Any] = {"type": "corpus"}
            if description:
                value["description"] = description
            if settings:
                value["settings"] = settings
            return [Edit(entry_path("knowledge", ident), value)]
        if entry is None or entry.get("type") != "corpus":
            raise NotFound(f"no corpus {ident!r} in this agent on staging")
        if op == "disconnect":
            return [Edit(entry_path("knowledge", ident), remove=True)]
        edits = []
        if description != (entry.get("description") or ""):
            edits.append(Edit(entry_path("knowledge", ident, "description"), description or None,
                              remove=not description))
        if (settings or {}) != (entry.get("settings") or {}):
            edits.append(Edit(entry_path("knowledge", ident, "settings"), settings,
                              remove=settings is None))
        return edits

    return plan, f"{op} corpus {ident}"


SOURCE_NAMES = {"sharepoint": "SharePoint folder", "website": "website"}


def source_plan(form: dict[str, str]) -> tuple[api_ops.Plan, str]:
    """A knowledge source other than a corpus: a SharePoint folder (the API's
    .../sharepoint/folder routes edit the one of id `sharepoint`) or a website; the same
    plans as the API's."""
    kind, op = form.get("type", ""), form.get("op", "save")
    if kind not in SOURCE_NAMES:
        raise UsageError(f"unknown knowledge type {kind!r}",
                         hint="connect a corpus, a SharePoint folder or a website")
    ident = form.get("id", "").strip() or (plans.SHAREPOINT if kind == "sharepoint" else "")
    api_ops.check_entry_id("knowledge source", ident)
    description = form.get("description", "").strip()
    named = f"{SOURCE_NAMES[kind]} {ident}"
    missing = f"no {named} in this agent on staging"
    if op == "disconnect":
        return plans.disconnect_source(kind, ident, missing=missing), f"disconnect {named}"
    settings = _json(form, "settings", f"the settings of {named}") or {}
    if op == "connect":
        return plans.connect_source(
            kind, ident, settings, description or None, hint="change it in its own form",
            exists=f"knowledge source {ident!r} is connected already"), f"connect {named}"
    if op != "save":
        raise UsageError(f"unknown knowledge action {op!r}")
    return plans.update_source(kind, ident, settings, description, missing=missing), \
        f"update {named}"


def tool_plan(form: dict[str, str]) -> tuple[api_ops.Plan, str]:
    """Enable or disable a tool, add one (enabled, as the API's .../enable does, with its
    config), or replace a tool's own config."""
    ident, op = form.get("id", "").strip(), form.get("op", "enable")
    if op not in ("enable", "disable", "add", "config"):
        raise UsageError(f"unknown tool action {op!r}")
    api_ops.check_entry_id("tool", ident)
    config = _json(form, "config", "the tool's config") if op in ("add", "config") else None
    enable = plans.enable_tool(ident)

    def plan(current: Current) -> list[Edit]:
        if op == "add":
            if entry_of(current, "tools", ident) is not None:
                raise Conflict(f"tool {ident!r} is there already",
                               hint="change it in its own form")
            edits = list(enable(current))
            if config:
                edits.append(Edit(entry_path("tools", ident, "config"), config))
            return edits
        if op == "enable":
            return list(enable(current))
        tool = _need(current, "tools", ident, "tool")
        if op == "disable":
            return [Edit(entry_path("tools", ident, "enabled"), False)]
        if (config or {}) == (tool.get("config") or {}):
            return []
        return [Edit(entry_path("tools", ident, "config"), config, remove=config is None)]

    verbs = {"add": "add tool", "config": "config of tool"}
    return plan, f"{verbs.get(op, op + ' tool')} {ident}"


def action_plan(form: dict[str, str]) -> tuple[api_ops.Plan, str]:
    tool, ident = form.get("tool", ""), form.get("id", "")
    api_ops.check_entry_id("action", ident)
    enabled = form.get("enabled") == "on"
    config = _json(form, "config", "the action's config")
    base = entry_path("tools", tool, "actions", Entry(ident))

    def plan(current: Current) -> list[Edit]:
        _need(current, "tools", tool, "tool")
        action = _need(current, f"tools/{tool}", ident, "action")
        edits = []
        if enabled != action.get("enabled", True):
            edits.append(Edit((*base, Key("enabled")), enabled))
        if (config or {}) != (action.get("config") or {}):
            edits.append(Edit((*base, Key("config")), config, remove=config is None))
        return edits

    return plan, f"action {tool}/{ident}"


def guardrail_plan(form: dict[str, str]) -> tuple[api_ops.Plan, str]:
    kind = form.get("type", "").strip()
    api_ops.check_entry_id("guardrail", kind)
    enabled = form.get("enabled") == "on"
    config = _json(form, "config", "the guardrail's config")

    def plan(current: Current) -> list[Edit]:
        entry = entry_of(current, "guardrails", kind)
        if form.get("op") == "add" and entry is not None:
            raise Conflict(f"guardrail {kind!r} is there already",
                           hint="change it in its own form")
        edits = []
        if entry is None or enabled != entry.get("enabled", True):
            edits.append(Edit(entry_path("guardrails", kind, "enabled"), enabled))
        if (config or {}) != ((entry or {}).get("config") or {}):
            edits.append(Edit(entry_path("guardrails", kind, "config"), config,
                              remove=config is None))
        return edits

    return plan, f"guardrail {kind}"


PLANS: dict[str, Planner] = {"settings": settings_plan, "instruction": instruction_plan,
                             "corpus": corpus_plan, "source": source_plan, "tool": tool_plan,
                             "action": action_plan, "guardrail": guardrail_plan}


def current_part(config: Current, kind: str, form: dict[str, str]) -> Any:
    """What the current staging holds of what the form *kind* edits."""
    if kind == "settings":
        return {k: config.get(k) for k in ("name", "description", "model", "access", "tags")}
    section = {"instruction": "instructions", "corpus": "knowledge", "source": "knowledge",
               "tool": "tools",
               "guardrail": "guardrails"}.get(kind)
    if section is not None:
        return entry_of(config, section, form.get("id") or form.get("type") or "")
    return entry_of(config, f"tools/{form.get('tool', '')}", form.get("id", ""))


# -- the page ----------------------------------------------------------------------------


def settings_help(kind: str) -> str:
    """The settings a knowledge type takes, from the model, for the form's label."""
    from agentstage.model import KNOWLEDGE_SETTINGS

    fields = KNOWLEDGE_SETTINGS[kind].model_fields
    return ", ".join(f"{name} (required)" if f.is_required() else name
                     for name, f in fields.items())


def edit_context(request: Request, store: Store, agent: str) -> dict[str, Any]:
    config, etag = api_ops.staging_view(store, agent)
    may_edit, _may_publish = powers(request, store, request.state.caller, agent)
    name = config.get("name")  # as pages.agent_name, without loading staging again
    return {"agent": agent, "name": name if isinstance(name, str) else None, "config": config,
            "etag": etag or "", "may_edit": may_edit, "typed": None, "error": None,
            "lost": None, "pretty": pretty, "access_values": ACCESS,
            "settings_help": settings_help,
            "crumbs": [("Agents", "/"), (agent, f"/agents/{agent}"), ("Edit staging", None)]}


@router.get("/agents/{agent_id}/edit")
def edit_page(request: Request, store: StoreDep, _viewer: PageReaderDep, agent_id: str,
              saved: str = "") -> Response:
    """Every editable part of the agent on staging, a form each (to editors)."""
    context = edit_context(request, store, agent_id)
    if saved:
        context["notice"] = (f"Saved on staging: {saved}. Production is untouched until "
                             "someone publishes.")
    return page(request, "edit.html", **context)


@router.post("/agents/{agent_id}/edit/{kind}")
def save(request: Request, store: StoreDep, caller: PosterDep, form: FormDep, agent_id: str,
         kind: str) -> Response:
    """One form's save: one commit on staging (If-Match: the version the form showed)."""
    if kind not in PLANS:
        raise NotFound(f"no form {kind!r}", hint="send the forms of the edit page")
    try:
        who = check_editor(request, store, caller)
        plan, what = PLANS[kind](form)
        message = form.get("message", "").strip() or None
        result = one_writer(request, lambda: api_ops.edit_agent(
            store, agent_id, plan, if_match=form.get("etag") or None, message=message,
            author=who, what=what))
    except AgentstageError as exc:
        context = edit_context(request, store, agent_id)
        error = problem(exc)
        typed = {"kind": kind, "key": form.get("id") or form.get("type") or "",
                 "tool": form.get("tool", ""), "form": form}
        if isinstance(exc, api_ops.PreconditionFailed):
            error["hint"] = ("someone else saved this agent after you opened the page: "
                             "compare your version with the current one below; the forms "
                             "now show the current version")
            context["lost"] = {"kind": kind, "yours": {k: v for k, v in form.items()
                                                       if k not in ("csrf", "etag")},
                               "current": current_part(context["config"], kind, form)}
        else:
            context["typed"] = typed
        return page(request, "edit.html", error["status"], **{**context, "error": error})
    done = what if result.get("commit") else f"{what} (nothing changed)"
    return redirect(f"/agents/{agent_id}/edit?" + urlencode({"saved": done}))
