"""Who a request acts as, and the repository it acts on: one way in for each (dependencies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from agentstage.agents import resolve_identity
from agentstage.store import Store


@dataclass(frozen=True)
class Auth:
    """How requests are authenticated. `none`: every request acts as the identity the CLI
    would use (--author, AGENTSTAGE_AUTHOR, git config); allowed on loopback only."""

    mode: str = "none"
    author: str | None = None


def open_store(request: Request) -> Store:
    """A Store of its own for each request: pygit2 objects are not shared between threads."""
    return Store.open(request.app.state.repo)


def identity(request: Request, store: Annotated[Store, Depends(open_store)]) -> str:
    """`Name <email>` of the request's identity, as the operations take an author."""
    auth: Auth = request.app.state.auth
    who = str(resolve_identity(store, auth.author))
    request.state.identity = who
    return who


StoreDep = Annotated[Store, Depends(open_store)]
Who = Annotated[str, Depends(identity)]
