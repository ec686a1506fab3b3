"""The agent model: what each of an agent's five files may hold."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from agentstage.layout import ENTRY_ID_PATTERN as ENTRY_ID_PATTERN
from agentstage.layout import NESTED_KEYS as NESTED_KEYS

NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=False)]
EntryId = Annotated[str, StringConstraints(pattern=ENTRY_ID_PATTERN)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
FreeForm = dict[str, JsonValue]
Access = Literal["private", "team", "organization", "public"]
KnowledgeType = Literal["corpus", "sharepoint", "website"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class ModelSettings(Strict):
    provider: str | None = None
    name: NonEmpty
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    parameters: FreeForm = Field(default_factory=dict)


class Settings(Strict):
    """agent.yaml"""

    name: NonEmpty
    description: str = ""
    model: ModelSettings
    access: Access = "private"
    tags: list[Tag] = Field(default_factory=list)


class Instruction(Strict):
    id: EntryId
    text: str


class KnowledgeSource(Strict):
    id: EntryId
    type: KnowledgeType
    description: str = ""
    settings: FreeForm = Field(default_factory=dict)


class Action(Strict):
    id: EntryId
    enabled: bool = True
    description: str = ""
    config: FreeForm = Field(default_factory=dict)


class Tool(Strict):
    id: EntryId
    enabled: bool = True
    description: str = ""
    config: FreeForm = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=list)


class Guardrail(Strict):
    type: EntryId
    enabled: bool = True
    config: FreeForm = Field(default_factory=dict)


class Section:
    """One file of an agent: its name, the section it diffs under, its model."""

    def __init__(self, name: str, file: str, model: type[BaseModel], is_list: bool,
                 key: str) -> None:
        self.name = name
        self.file = file
        self.model = model
        self.is_list = is_list
        self.key = key  # what names a list entry in a field path: "id", or "type"


SECTIONS: tuple[Section, ...] = (
    Section("settings", "agent.yaml", Settings, False, ""),
    Section("instructions", "instructions.yaml", Instruction, True, "id"),
    Section("knowledge", "knowledge.yaml", KnowledgeSource, True, "id"),
    Section("tools", "tools.yaml", Tool, True, "id"),
    Section("guardrails", "guardrails.yaml", Guardrail, True, "type"),
)
SECTION_BY_FILE = {s.file: s for s in SECTIONS}
SECTION_BY_NAME = {s.name: s for s in SECTIONS}
AGENT_FILES = tuple(s.file for s in SECTIONS)



class AgentConfig(BaseModel):
    """One agent's whole configuration, all files together."""

    model_config = ConfigDict(frozen=True)

    settings: Settings
    instructions: list[Instruction] = Field(default_factory=list)
    knowledge: list[KnowledgeSource] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    guardrails: list[Guardrail] = Field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The agent as one JSON object (the `show` shape of DESIGN.md)."""
        out: dict[str, Any] = self.settings.model_dump(mode="json")
        for section in SECTIONS[1:]:
            out[section.name] = [e.model_dump(mode="json") for e in getattr(self, section.name)]
        return out


def json_schema() -> dict[str, Any]:
    """A JSON Schema per agent file, for editors' YAML language servers."""
    schemas: dict[str, Any] = {}
    for section in SECTIONS:
        schema = section.model.model_json_schema()
        if section.is_list:
            defs = schema.pop("$defs", {})
            schema = {"type": "array", "items": schema}
            if defs:
                schema["$defs"] = defs
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = section.file
        schemas[section.file] = schema
    return schemas
