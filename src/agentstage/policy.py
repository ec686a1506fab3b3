"""The server policy: who may change it, edit staging, and publish each agent.

It lives as `policy.yaml` in the tip of `refs/meta/agentstage` (like Gerrit's
`refs/meta/config`): a ref the server hook protects, so every change to it is a
commit, versioned and auditable. No policy means anyone who can push may edit and
publish; the structural rules of the server hook hold either way.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from agentstage.errors import InvalidConfig, Problem, UsageError
from agentstage.ids import is_agent_id
from agentstage.meta import ANYONE as ANYONE
from agentstage.meta import DEFAULT_IDENTITY_VAR as DEFAULT_IDENTITY_VAR
from agentstage.meta import IDENTITY_CONFIG as IDENTITY_CONFIG
from agentstage.meta import META_REF as META_REF
from agentstage.meta import POLICY_FILE as POLICY_FILE
from agentstage.meta import PolicyRules
from agentstage.meta import identity_variable as identity_variable
from agentstage.meta import pusher as pusher
from agentstage.store import Identity, Store

POLICY_FIELDS = "admins, editors, publishers, users, webhooks, approvals, signing"


def _email(value: str) -> str:
    if "@" not in value or any(c.isspace() or c in "<>" for c in value):
        raise ValueError(f"{value!r} is not an email address")
    return value


# a user's email, or a list of them; read as a list
Emails = Annotated[list[Annotated[str, AfterValidator(_email)]], Field(min_length=1),
                   BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]


ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
WEBHOOK_FIELDS = "url, events, secret_env, timeout"


class Webhook(BaseModel):
    """Where each publish is sent (the history entry as JSON), signed with the secret in
    the environment variable *secret_env* of the server (webhooks.py delivers it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    events: list[Literal["publish"]] = Field(min_length=1)
    secret_env: str
    timeout: float = Field(default=5.0, gt=0, le=60)  # seconds, per attempt

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname \
                or any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError(f"{value!r} is not an http or https URL")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an event is listed twice")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        if not ENV_NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name (the secret "
                             "itself belongs in that variable, not in the policy)")
        return value


SIGNING_FIELDS = "required, allowed_signers"
# git's allowed-signers line (ssh-keygen(1) ALLOWED SIGNERS): principals, options, a key
ALLOWED_SIGNER_RE = re.compile(
    r'(?P<principals>[^\s"]+)\s+(?:(?P<options>[^\s"]*(?:"[^"\n]*"[^\s"]*)*)\s+)?'
    r'(?P<type>(?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+)\s+(?P<key>[A-Za-z0-9+/]+={0,2})(?:\s+.*)?')


def _allowed_signer(value: str) -> str:
    import base64
    import binascii

    found = ALLOWED_SIGNER_RE.fullmatch(value.strip())
    if found is None or "\n" in value.strip():
        raise ValueError(f"{value!r} is not an allowed-signers line: 'EMAIL "
                         "namespaces=\"git\" ssh-ed25519 AAAA...'")
    try:
        blob = base64.b64decode(found["key"], validate=True)
    except binascii.Error:
        raise ValueError(f"the key of {found['principals']!r} is not base64") from None
    kind = found["type"].encode()
    if blob[4:4 + len(kind)] != kind:
        raise ValueError(f"the key of {found['principals']!r} is not a {found['type']} key")
    return value.strip()


class Signing(BaseModel):
    """Whether publishes must be signed, and whose SSH signatures count (lines of git's
    gpg.ssh.allowedSignersFile); the server hook checks each pushed publish tag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: bool = False
    allowed_signers: list[Annotated[str, AfterValidator(_allowed_signer)]] = Field(
        default=[], validate_default=True)

    @field_validator("allowed_signers")
    @classmethod
    def _some(cls, value: list[str], info: Any) -> list[str]:
        if info.data.get("required") and not value:
            raise ValueError("required signatures need at least one allowed signer")
        return value


class Policy(BaseModel, PolicyRules):
    """A list left out names nobody; "*" names any authenticated pusher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admins: list[str] = []
    editors: list[str] = []
    publishers: dict[str, list[str]] = {}
    users: dict[str, Emails] = {}  # pusher name -> the emails their publishes are tagged with
    webhooks: list[Webhook] = []
    signing: Signing | None = None  # signed publishes (signing.py)
    approvals: dict[str, Annotated[int, Field(ge=0, le=100)]] = {}  # agent id or "*" -> count

    @field_validator("admins", "editors")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip():
                raise ValueError("a name must not be empty")
        return value

    @field_validator("publishers")
    @classmethod
    def _agents(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for agent, names in value.items():
            if agent != ANYONE and not is_agent_id(agent):
                raise ValueError(f"{agent!r} is neither an agent id nor \"*\"")
            if any(not n.strip() for n in names):
                raise ValueError("a name must not be empty")
        return value

    @field_validator("approvals")
    @classmethod
    def _approval_counts(cls, value: dict[str, int]) -> dict[str, int]:
        for agent in value:
            if agent != ANYONE and not is_agent_id(agent):
                raise ValueError(f"{agent!r} is neither an agent id nor \"*\"")
        return value

    @field_validator("users")
    @classmethod
    def _users(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in value:
            if not name.strip() or name == ANYONE:
                raise ValueError("a user is a pusher's name, not empty and not \"*\"")
        return value


def parse_policy(data: bytes, file: str = f"{META_REF}:{POLICY_FILE}") -> Policy:
    """Strict YAML (as for agent files) into a Policy, every problem located."""
    from agentstage.yamlload import parse_yaml

    doc = parse_yaml(data, file)
    if not isinstance(doc.data, dict):
        raise InvalidConfig([Problem(file, doc.line_of(()), "",
                                     f"must be a mapping with {POLICY_FIELDS}")])
    try:
        return Policy.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(s for s in error["loc"] if isinstance(s, (str, int)))
            path = ".".join(str(s) for s in loc)
            expected = WEBHOOK_FIELDS if loc[:1] == ("webhooks",) and len(loc) > 2 \
                else SIGNING_FIELDS if loc[:1] == ("signing",) and len(loc) > 1 \
                else POLICY_FIELDS
            message = f"unknown field (expected {expected})" \
                if error["type"] == "extra_forbidden" else str(error["msg"]).removeprefix(
                    "Value error, ")
            problems.append(Problem(file, doc.line_of(loc), path, message))
        raise InvalidConfig(problems, hint="see 'agentstage policy --help' for the format") \
            from None


def load_policy(store: Store, commit: str | None) -> Policy | None:
    """The policy at *commit* of the meta ref; None when there is none."""
    if commit is None:
        return None
    data = store.file_at(commit, POLICY_FILE)
    return None if data is None else parse_policy(data)


def show_policy(store: Store) -> dict[str, Any]:
    commit = store.ref(META_REF)
    data = store.file_at(commit, POLICY_FILE) if commit else None
    policy = parse_policy(data) if data is not None else None
    return {
        "ref": META_REF,
        "commit": commit,
        "identity_variable": identity_variable(store),
        "policy": policy.model_dump() if policy else None,
        "text": data.decode() if data is not None else None,
    }


def set_policy(store: Store, data: bytes, who: Identity, message: str | None = None) \
        -> dict[str, Any]:
    """Commit *data* as policy.yaml on the meta ref (compare-and-swap). The server's hook
    decides at push time whether the pusher is an admin."""
    policy = parse_policy(data, POLICY_FILE)
    if not policy.admins:
        raise UsageError("a policy without admins could never be changed again",
                         hint="name at least one admin: admins: [alice]")
    old = store.ref(META_REF)
    if old is not None and store.file_at(old, POLICY_FILE) == data:
        return {"ref": META_REF, "commit": old, "changed": False}
    new = store.commit_files(old, {POLICY_FILE: data}, message or "Set the agentstage policy",
                             who)
    store.update_refs({META_REF: (old, new)}, "agentstage policy set", who)
    return {"ref": META_REF, "commit": new, "changed": True}
