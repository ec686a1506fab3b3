"""The meta ref: where the server's policy lives, and who is pushing. Apart from
policy.py, so that a hook that meets no policy never loads the validation library."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from agentstage.store import Store

META_REF = "refs/meta/agentstage"
POLICY_FILE = "policy.yaml"
IDENTITY_CONFIG = "agentstage.identity"
DEFAULT_IDENTITY_VAR = "REMOTE_USER"
ANYONE = "*"


def identity_variable(store: Store) -> str:
    return store.config(IDENTITY_CONFIG) or DEFAULT_IDENTITY_VAR


def pusher(store: Store) -> str | None:
    """The authenticated pusher, from the variable the git host sets (None when unset)."""
    value = os.environ.get(identity_variable(store), "").strip()
    return value or None


class WebhookFields(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def events(self) -> Sequence[str]: ...
    @property
    def secret_env(self) -> str: ...
    @property
    def timeout(self) -> float: ...


class SigningFields(Protocol):
    @property
    def required(self) -> bool: ...
    @property
    def allowed_signers(self) -> Sequence[str]: ...


class PolicyRules:
    """The policy's fields and the questions they answer: shared by `policy.Policy` (the
    validated model) and `PolicyView` (the same fields, read back without the validation
    library from what a validation left on disk)."""

    admins: list[str]
    editors: list[str]
    publishers: dict[str, list[str]]
    users: dict[str, list[str]]  # pusher name -> the emails their publishes are tagged with
    webhooks: Sequence[WebhookFields]
    signing: SigningFields | None
    approvals: dict[str, int]  # agent id or "*" -> count

    def tagger_refusal(self, who: str | None, email: str) -> str | None:
        """Why a publish tagged by *email* may not be pushed by *who* (None: it may). Only
        when the policy maps users to emails: the record must name the pusher."""
        if not self.users:
            return None
        if who is None or who not in self.users:
            return (f"the policy maps pushers to emails (users), and {who} has none: ask an "
                    f"admin to add '{who}: <your email>' to users")
        mine = self.users[who]
        if email.casefold() in (e.casefold() for e in mine):
            return None
        return (f"tagger {email} is not {who} ({', '.join(mine)}): publish as yourself "
                f"(agentstage --author 'Your Name <{mine[0]}>' publish ...)")

    def is_admin(self, who: str | None) -> bool:
        return _member(who, self.admins)

    def is_editor(self, who: str | None) -> bool:
        return _member(who, self.editors)

    def is_publisher(self, who: str | None, agent: str) -> bool:
        return _member(who, self.publishers.get(agent, [])) or \
            _member(who, self.publishers.get(ANYONE, []))


def _member(who: str | None, names: list[str]) -> bool:
    return who is not None and (who in names or ANYONE in names)


class WebhookView(NamedTuple):
    url: str
    events: list[str]
    secret_env: str
    timeout: float


class SigningView(NamedTuple):
    required: bool
    allowed_signers: list[str]


class PolicyView(PolicyRules):
    """A policy that `policy.parse_policy` validated before, as `Policy.model_dump` left
    it (see `read_policy`)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.admins = list(data["admins"])
        self.editors = list(data["editors"])
        self.publishers = {k: list(v) for k, v in data["publishers"].items()}
        self.users = {k: list(v) for k, v in data["users"].items()}
        self.webhooks = [WebhookView(**w) for w in data["webhooks"]]
        signing = data["signing"]
        self.signing = SigningView(**signing) if signing is not None else None
        self.approvals = dict(data["approvals"])


def read_policy(store: Store, commit: str | None = None) -> PolicyRules | None:
    """The policy at *commit* of the meta ref (default: the ref's commit), None when
    there is none; InvalidConfig when it does not validate. A policy commit validated
    once is read back from the disk cache (diskcache.py) by its id, so a server hook
    does not load the validation library for each push."""
    if commit is None:
        commit = store.ref(META_REF)
        if commit is None:
            return None
    disk = store.disk_cache
    known = disk.policy(commit) if disk is not None else None
    if known is not None:
        try:
            return PolicyView(known)
        except (KeyError, TypeError, AttributeError, ValueError):
            pass  # not what a dump of this version holds: validate again
    from agentstage.policy import load_policy

    policy = load_policy(store, commit)
    if policy is not None and disk is not None:
        disk.put_policy(commit, policy.model_dump(mode="json"))
    return policy
