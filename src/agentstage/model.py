"""The agent model: what each of an agent's five files may hold."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints
from pydantic_core import PydanticCustomError

from agentstage.layout import CUSTOM_GUARDRAIL_PREFIXES as CUSTOM_GUARDRAIL_PREFIXES
from agentstage.layout import ENTRY_ID_PATTERN as ENTRY_ID_PATTERN
from agentstage.layout import GUARDRAIL_TYPES as GUARDRAIL_TYPES
from agentstage.layout import NESTED_KEYS as NESTED_KEYS
from agentstage.layout import guardrail_type_problem as guardrail_type_problem
from agentstage.layout import is_url

NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=False)]
EntryId = Annotated[str, StringConstraints(pattern=ENTRY_ID_PATTERN)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
FreeForm = dict[str, JsonValue]
Access = Literal["private", "team", "organization", "public"]
KnowledgeType = Literal["corpus", "sharepoint", "website"]



class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _url(value: str) -> str:
    if not is_url(value):
        raise PydanticCustomError("url", "must be an http:// or https:// URL")
    return value


Url = Annotated[str, AfterValidator(_url)]


class ModelSettings(Strict):
    """The model the agent runs on."""

    provider: str | None = Field(default=None, description="Model provider, e.g. openai.")
    name: NonEmpty = Field(description="Model name, e.g. gpt-4o (required).")
    temperature: float | None = Field(default=None, ge=0, le=2,
                                      description="Sampling temperature, 0 to 2.")
    max_tokens: int | None = Field(default=None, gt=0,
                                   description="Most tokens in one reply, above 0.")
    parameters: FreeForm = Field(default_factory=dict,
                                 description="Free-form provider options, e.g. {top_p: 0.9}.")


class Settings(Strict):
    """agent.yaml"""

    name: NonEmpty = Field(description="Display name of the agent (required).")
    description: str = Field(default="", description="What the agent is for.")
    model: ModelSettings = Field(description="The model the agent runs on (required).")
    access: Access = Field(default="private",
                           description="Who may use the agent: private (the default), team, "
                                       "organization or public.")
    tags: list[Tag] = Field(default_factory=list,
                            description="Labels for finding the agent, e.g. [billing, tier-1].")


class Instruction(Strict):
    """One part of the prompt; the list's order is the prompt's order."""

    id: EntryId = Field(description="Names the instruction in field paths: "
                                    "instructions[ID].text.")
    text: str = Field(description="The instruction text.")


class CorpusSettings(Strict):
    """settings of a knowledge source of type corpus: a document collection."""

    top_k: int | None = Field(default=None, gt=0,
                              description="Passages retrieved per question, above 0.")
    chunk_size: int | None = Field(default=None, gt=0,
                                   description="Size of an indexed passage, in tokens.")
    chunk_overlap: int | None = Field(default=None, ge=0,
                                      description="Tokens two neighbouring passages share.")
    min_score: float | None = Field(default=None, ge=0, le=1,
                                    description="Least relevance score kept, 0 to 1.")
    metadata_filters: FreeForm = Field(default_factory=dict,
                                       description="Only documents whose metadata match, "
                                                   "e.g. {status: published}.")


class SharePointSettings(Strict):
    """settings of a knowledge source of type sharepoint: a document library."""

    site_url: Url = Field(description="The SharePoint site, https://... (required).")
    library: str | None = Field(default=None, description="Document library on the site.")
    folder: str | None = Field(default=None, description="Folder in the library; default: all.")
    include_subfolders: bool | None = Field(default=None,
                                            description="Index the folders below it too.")
    exclude_folders: list[str] = Field(default_factory=list,
                                       description="Folders left out, e.g. [Drafts].")
    top_k: int | None = Field(default=None, gt=0,
                              description="Passages retrieved per question, above 0.")


class WebsiteSettings(Strict):
    """settings of a knowledge source of type website: pages crawled from a URL."""

    url: Url = Field(description="Where crawling starts, https://... (required).")
    crawl_depth: int | None = Field(default=None, ge=0,
                                    description="Links followed from the start page; 0: it "
                                                "alone.")
    max_pages: int | None = Field(default=None, gt=0, description="Most pages indexed.")
    include_patterns: list[str] = Field(default_factory=list,
                                        description="Only paths matching, e.g. /docs/*.")
    exclude_patterns: list[str] = Field(default_factory=list,
                                        description="Paths left out, e.g. /blog/*.")
    refresh_interval_hours: int | None = Field(default=None, gt=0,
                                               description="Hours between re-crawls.")
    top_k: int | None = Field(default=None, gt=0,
                              description="Passages retrieved per question, above 0.")


# What `settings` holds, per knowledge type: checked by the loader, shown in the schema.
KNOWLEDGE_SETTINGS: dict[str, type[BaseModel]] = {
    "corpus": CorpusSettings, "sharepoint": SharePointSettings, "website": WebsiteSettings,
}


class KnowledgeSource(Strict):
    """A source the agent retrieves from."""

    id: EntryId = Field(description="Names the source in field paths: knowledge[ID].")
    type: KnowledgeType = Field(description="corpus, sharepoint or website; settings follow "
                                            "the type.")
    description: str = Field(default="", description="What the source holds.")
    settings: FreeForm = Field(default_factory=dict,
                               description="Settings of the type: corpus {top_k, chunk_size, "
                                           "...}, sharepoint {site_url, library, ...}, website "
                                           "{url, crawl_depth, ...}.")


class Action(Strict):
    """One action of a tool."""

    id: EntryId = Field(description="Names the action in field paths: "
                                    "tools[ID].actions[ID].")
    enabled: bool = Field(default=True, description="Whether the agent may use the action.")
    description: str = Field(default="", description="What the action does.")
    config: FreeForm = Field(default_factory=dict,
                             description="Free-form options of the action, e.g. "
                                         "{max_results: 5}.")


class Tool(Strict):
    """A tool the agent may call, with its actions."""

    id: EntryId = Field(description="Names the tool in field paths: tools[ID].")
    enabled: bool = Field(default=True, description="Whether the agent may use the tool.")
    description: str = Field(default="", description="What the tool does.")
    config: FreeForm = Field(default_factory=dict,
                             description="Free-form options of the tool.")
    actions: list[Action] = Field(default_factory=list,
                                  description="The tool's actions, ids unique.")


class Guardrail(Strict):
    """A safety check on the agent's conversations; one per type."""

    type: EntryId = Field(description="A known guardrail type (" + ", ".join(GUARDRAIL_TYPES)
                                      + "), or custom-<name> (or x-<name>) for one of your "
                                      "own; names it in field paths: guardrails[TYPE].")
    enabled: bool = Field(default=True, description="Whether the guardrail runs.")
    config: FreeForm = Field(default_factory=dict,
                             description="Free-form options, e.g. {threshold: 0.7, "
                                         "action: block}.")


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
    """A JSON Schema per agent file, for editors' YAML language servers: every field with
    a description (hover text), guardrail types and knowledge settings with their shapes."""
    schemas: dict[str, Any] = {}
    for section in SECTIONS:
        schema = section.model.model_json_schema()
        if section.name == "knowledge":
            _knowledge_settings_schema(schema)
        elif section.name == "guardrails":
            _guardrail_type_schema(schema["properties"]["type"])
        if section.is_list:
            defs = schema.pop("$defs", {})
            schema = {"type": "array", "items": schema}
            if defs:
                schema["$defs"] = defs
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = section.file
        schemas[section.file] = schema
    return schemas


def _knowledge_settings_schema(schema: dict[str, Any]) -> None:
    """`settings` follows `type`: one if/then per type, its settings model in $defs."""
    defs = schema.setdefault("$defs", {})
    rules = []
    for kind, model in KNOWLEDGE_SETTINGS.items():
        shape = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(shape.pop("$defs", {}))
        defs[model.__name__] = shape
        then: dict[str, Any] = {"properties": {"settings": {"$ref": f"#/$defs/{model.__name__}"}}}
        if shape.get("required"):
            then["required"] = ["settings"]
        rules.append({"if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                      "then": then})
    schema["allOf"] = rules


def _guardrail_type_schema(prop: dict[str, Any]) -> None:
    """A known type (each with its own hover text), or custom-<name> (or x-<name>)."""
    prop.pop("pattern", None)
    prop.pop("type", None)
    prop["anyOf"] = [{"const": name, "description": text}
                     for name, text in GUARDRAIL_TYPES.items()]
    prop["anyOf"].append({"type": "string",
                          "pattern": "^(custom|x)-[A-Za-z0-9_.:-]{1,120}$",
                          "description": "A guardrail type of your own."})
