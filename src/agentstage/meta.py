"""The meta ref: where the server's policy lives, and who is pushing. Apart from
policy.py, so that a hook that meets no policy never loads the validation library."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentstage.store import Store

META_REF = "refs/meta/agentstage"
POLICY_FILE = "policy.yaml"
IDENTITY_CONFIG = "agentstage.identity"
DEFAULT_IDENTITY_VAR = "REMOTE_USER"


def identity_variable(store: Store) -> str:
    return store.config(IDENTITY_CONFIG) or DEFAULT_IDENTITY_VAR


def pusher(store: Store) -> str | None:
    """The authenticated pusher, from the variable the git host sets (None when unset)."""
    value = os.environ.get(identity_variable(store), "").strip()
    return value or None
