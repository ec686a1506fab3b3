"""Who a request acts as, what the policy lets it do, and the repository it acts on.

`Auth.caller(headers)` is the one way a request gets an identity (cheap: no git read, so
the delivery fast path can call it too). The dependencies below are the one way a route
gets it: `Reader` for every route under /api/ (401 without credentials), `Who` for a write
to staging (the policy's editors), `PublisherWho` for a publish (the agent's publishers).
Admins may do everything (DESIGN.md section 8).

Pages (section 9) get their caller from `page_reader` instead: with --auth tokens, a
browser session cookie made by /login (signed with the tokens file's key; it names the token
id and ends with it, or after SESSION_SECONDS) or a bearer token; otherwise the proxy header
or the fixed identity, as for the API. The API never reads the cookie, so a cross-site form
cannot act through it. Each page session has a CSRF token, `Auth.csrf_token(session)`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from agentstage.errors import PolicyDenied, Unauthenticated, UsageError
from agentstage.policy import META_REF, Policy, load_policy
from agentstage.store import Identity, Store, parse_identity
from agentstage.tokens import TokenEntry, TokenFile

UNKNOWN_EMAIL_DOMAIN = "agentstage.invalid"  # RFC 2606: a name that is never an address
SESSION_COOKIE = "agentstage_session"
SESSION_SECONDS = 12 * 3600


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
    # signs CSRF tokens when there is no tokens file (--auth none or header): one per process
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def secret(self) -> bytes:
        """The key of sessions and CSRF tokens: the tokens file's (servers sharing the file
        share sessions), else this process's own."""
        key = self.tokens.session_key() if self.tokens is not None else b""
        return key or self._key

    def sign(self, purpose: str, text: str) -> str:
        return hmac.new(self.secret(), f"{purpose}\0{text}".encode(),
                        hashlib.sha256).hexdigest()

    def csrf_token(self, session: str) -> str:
        """The CSRF token of every form of the page *session* (see `page_caller`)."""
        return self.sign("csrf", session)

    def new_session(self, entry: TokenEntry, now: float | None = None) -> str:
        """A session cookie's value for the token *entry*: `v1.ID.EXPIRES.NONCE.MAC`."""
        expires = int(time.time() if now is None else now) + SESSION_SECONDS
        body = f"v1.{entry.id}.{expires}.{secrets.token_hex(8)}"
        return f"{body}.{self.sign('session', body)}"

    def session_caller(self, cookie: str) -> Caller | None:
        """The caller of a session cookie while it is genuine, unexpired, and its token live."""
        parts = cookie.split(".")
        if self.tokens is None or len(parts) != 5 or parts[0] != "v1" or len(cookie) > 200:
            return None
        body = ".".join(parts[:4])
        if not hmac.compare_digest(parts[4], self.sign("session", body)):
            return None
        if not (parts[2].isascii() and parts[2].isdigit()) or int(parts[2]) <= time.time():
            return None
        entry = self.tokens.live(parts[1])
        return None if entry is None else Caller(entry.name, Identity(entry.name, entry.email))

    def page_caller(self, headers: Mapping[str, str], cookies: Mapping[str, str]
                    ) -> tuple[Caller, str]:
        """(a page request's caller, the session its CSRF tokens are bound to)."""
        if self.mode == "tokens" and "authorization" not in headers:
            cookie = cookies.get(SESSION_COOKIE)
            if not cookie:
                raise Unauthenticated("sign in to see this page",
                                      hint="sign in at /login with a token an admin made "
                                           "(agentstage token create NAME)")
            caller = self.session_caller(cookie)
            if caller is None:
                raise Unauthenticated("your session has ended (signed out, expired, or its "
                                      "token was revoked)", hint="sign in again at /login")
            return caller, "session:" + cookie
        caller = self.caller(headers)
        if self.mode == "tokens":
            return caller, "bearer:" + headers.get("authorization", "")
        if self.mode == "header":
            assert self.header is not None
            return caller, "header:" + headers.get(self.header.lower(), "").strip()
        return caller, "none"

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
    store = Store.open(request.app.state.repo)
    request.state.store = store
    return store


StoreDep = Annotated[Store, Depends(open_store)]


def reader(request: Request) -> Caller:
    """Any authenticated caller may read; none: 401."""
    caller: Caller = request.app.state.auth.caller(request.headers)
    request.state.identity = str(caller.identity)
    return caller


ReaderDep = Annotated[Caller, Depends(reader)]


def page_reader(request: Request) -> Caller:
    """A page's caller (the session cookie, a bearer token, the proxy header); none: 401,
    which a page answers with the login page."""
    auth: Auth = request.app.state.auth
    caller, session = auth.page_caller(request.headers, request.cookies)
    request.state.identity = str(caller.identity)
    request.state.caller, request.state.session = caller, session
    return caller


PageReaderDep = Annotated[Caller, Depends(page_reader)]


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


def may_edit(policy: Policy | None, caller: Caller) -> bool:
    return policy is None or policy.is_editor(caller.name) or policy.is_admin(caller.name)


def may_publish(policy: Policy | None, caller: Caller, agent: str) -> bool:
    return policy is None or policy.is_publisher(caller.name, agent) or \
        policy.is_admin(caller.name)


def role(request: Request, store: Store, caller: Caller, agent: str | None = None) -> str:
    """What the policy makes *caller*, in words (for the page's header)."""
    policy = _policy(request, store)
    if policy is None:
        return "editor and publisher (no policy)"
    if policy.is_admin(caller.name):
        return "admin"
    roles = ["editor"] if policy.is_editor(caller.name) else []
    if agent is not None and policy.is_publisher(caller.name, agent):
        roles.append(f"publisher of {agent}")
    return " and ".join(roles) or "viewer"


def powers(request: Request, store: Store, caller: Caller, agent: str) -> tuple[bool, bool]:
    """(may edit staging, may publish *agent*): what a page offers."""
    policy = _policy(request, store)
    return may_edit(policy, caller), may_publish(policy, caller, agent)


def check_editor(request: Request, store: Store, caller: Caller) -> str:
    """`Name <email>` of *caller* when the policy lets them write staging; else 403."""
    policy = _policy(request, store)
    if not may_edit(policy, caller):
        assert policy is not None
        raise PolicyDenied(
            f"{caller.name} may not edit staging: the policy's editors "
            f"({', '.join(policy.editors) or 'nobody'}) do not include them",
            hint="ask an admin to add them to editors in refs/meta/agentstage "
                 "(agentstage policy show)")
    request.state.identity = author = _author(policy, caller)
    return author


def check_publisher(request: Request, store: Store, caller: Caller, agent: str) -> str:
    """`Name <email>` of *caller* when the policy lets them publish *agent*; else 403."""
    policy = _policy(request, store)
    if not may_publish(policy, caller, agent):
        assert policy is not None
        named = sorted({*policy.publishers.get(agent, []), *policy.publishers.get("*", [])})
        raise PolicyDenied(
            f"{caller.name} may not publish {agent}: the policy's publishers for it "
            f"({', '.join(named) or 'nobody'}) do not include them",
            hint=f"ask an admin to add them to publishers.{agent} in refs/meta/agentstage")
    request.state.identity = author = _author(policy, caller)
    return author


def editor(request: Request, store: StoreDep, caller: ReaderDep) -> str:
    """`Name <email>` of a caller the policy lets write staging (editors, admins); 403."""
    return check_editor(request, store, caller)


def publisher(request: Request, store: StoreDep, caller: ReaderDep) -> str:
    """`Name <email>` of a caller the policy lets publish the route's agent; 403."""
    return check_publisher(request, store, caller, request.path_params.get("agent_id", ""))


Who = Annotated[str, Depends(editor)]
PublisherWho = Annotated[str, Depends(publisher)]
