"""Who a request acts as, what the policy lets it do, and the repository it acts on.

`Auth.caller(headers)` is the one way a request gets an identity (cheap: no git read, so
the delivery fast path can call it too). The dependencies below are the one way a route
gets it: `Reader` for every route under /api/ (401 without credentials), `Who` for a write
to staging (the policy's editors), `PublisherWho` for a publish (the agent's publishers).
Admins may do everything (DESIGN.md section 8).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from agentstage.errors import PolicyDenied, Unauthenticated, UsageError
from agentstage.policy import META_REF, Policy, load_policy
from agentstage.store import Identity, Store, parse_identity
from agentstage.tokens import TokenFile

UNKNOWN_EMAIL_DOMAIN = "agentstage.invalid"  # RFC 2606: a name that is never an address


@dataclass(frozen=True)
class Caller:
    """The policy's name for the caller, and the identity its commits are authored by."""

    name: str
    identity: Identity


def identity_for(name: str, email: str | None = None) -> Identity:
    """The commit identity of a caller known by *name* (a proxy header may give
    `Name <email>`, or an email alone)."""
    if email:
        return Identity(name, email)
    if "@" in name and " " not in name:
        return Identity(name, name)
    return Identity(name, f"{name.replace(' ', '.')}@{UNKNOWN_EMAIL_DOMAIN}")


@dataclass
class Auth:
    """How requests are authenticated (DESIGN.md section 8, "Who").

    none: every request acts as *fixed* (the CLI's identity); allowed on loopback only.
    tokens: `Authorization: Bearer <token>`, looked up in *tokens*.
    header: the authenticating proxy's *header* names the identity.
    """

    mode: str = "none"
    fixed: Identity | None = None
    tokens: TokenFile | None = None
    header: str | None = None
    _cache: dict[str, Caller] = field(default_factory=dict, repr=False)

    @property
    def describe(self) -> str:
        return f"header:{self.header}" if self.mode == "header" else self.mode

    def caller(self, headers: Mapping[str, str]) -> Caller:
        """The request's caller, or Unauthenticated (401). *headers*: lower-case names."""
        if self.mode == "none":
            assert self.fixed is not None
            return Caller(self.fixed.name, self.fixed)
        if self.mode == "tokens":
            assert self.tokens is not None
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("no credentials: send Authorization: Bearer <token>",
                                      hint="an admin makes one with 'agentstage token create "
                                           "NAME'")
            entry = self.tokens.lookup(token.strip())
            if entry is None:
                raise Unauthenticated("the token is unknown, revoked or expired",
                                      hint="ask an admin for a new one (agentstage token "
                                           "create NAME)")
            return Caller(entry.name, Identity(entry.name, entry.email))
        assert self.header is not None
        value = headers.get(self.header.lower(), "").strip()
        if not value or len(value) > 256 or any(ord(c) < 32 for c in value):
            raise Unauthenticated(f"no identity in the {self.header} header",
                                  hint="send requests through the authenticating proxy")
        known = self._cache.get(value)
        if known is None:
            if value.endswith(">") and "<" in value:
                try:
                    who = parse_identity(value, self.header)
                except UsageError:
                    raise Unauthenticated(f"the {self.header} header is not an identity",
                                          hint="it names a user, an email, or "
                                               "'Name <email>'") from None
                known = Caller(who.name, who)
            else:
                known = Caller(value, identity_for(value))
            if len(self._cache) < 10_000:
                self._cache[value] = known
        return known


def open_store(request: Request) -> Store:
    """A Store of its own for each request: pygit2 objects are not shared between threads."""
    return Store.open(request.app.state.repo)


StoreDep = Annotated[Store, Depends(open_store)]


def reader(request: Request) -> Caller:
    """Any authenticated caller may read; none: 401."""
    caller: Caller = request.app.state.auth.caller(request.headers)
    request.state.identity = str(caller.identity)
    return caller


ReaderDep = Annotated[Caller, Depends(reader)]


class PolicyCache:
    """The policy of the meta ref's current commit, parsed once per commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commit: str | None = None
        self._policy: Policy | None = None

    def get(self, store: Store) -> Policy | None:
        commit = store.ref(META_REF)
        with self._lock:
            if commit == self._commit and commit is not None:
                return self._policy
        policy = load_policy(store, commit)
        with self._lock:
            self._commit, self._policy = commit, policy
        return policy


def _policy(request: Request, store: Store) -> Policy | None:
    cache: PolicyCache = request.app.state.policy
    return cache.get(store)


def _author(policy: Policy | None, caller: Caller) -> str:
    """The commit identity: the policy's first email for the caller when it maps one
    (`users`), so publishes pass the git server's tagger check."""
    if policy is not None and caller.name in policy.users \
            and caller.identity.email.endswith("@" + UNKNOWN_EMAIL_DOMAIN):
        return str(Identity(caller.identity.name, policy.users[caller.name][0]))
    return str(caller.identity)


def editor(request: Request, store: StoreDep, caller: ReaderDep) -> str:
    """`Name <email>` of a caller the policy lets write staging (editors, admins); 403."""
    policy = _policy(request, store)
    if policy is not None and not (policy.is_editor(caller.name) or
                                   policy.is_admin(caller.name)):
        raise PolicyDenied(
            f"{caller.name} may not edit staging: the policy's editors "
            f"({', '.join(policy.editors) or 'nobody'}) do not include them",
            hint="ask an admin to add them to editors in refs/meta/agentstage "
                 "(agentstage policy show)")
    request.state.identity = author = _author(policy, caller)
    return author


def publisher(request: Request, store: StoreDep, caller: ReaderDep) -> str:
    """`Name <email>` of a caller the policy lets publish the route's agent; 403."""
    agent = request.path_params.get("agent_id", "")
    policy = _policy(request, store)
    if policy is not None and not (policy.is_publisher(caller.name, agent) or
                                   policy.is_admin(caller.name)):
        named = sorted({*policy.publishers.get(agent, []), *policy.publishers.get("*", [])})
        raise PolicyDenied(
            f"{caller.name} may not publish {agent}: the policy's publishers for it "
            f"({', '.join(named) or 'nobody'}) do not include them",
            hint=f"ask an admin to add them to publishers.{agent} in refs/meta/agentstage")
    request.state.identity = author = _author(policy, caller)
    return author


Who = Annotated[str, Depends(editor)]
PublisherWho = Annotated[str, Depends(publisher)]
