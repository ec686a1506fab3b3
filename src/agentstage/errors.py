"""One exception family: every error a user can act on, with its exit code."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NamedTuple


class Problem(NamedTuple):
    """One thing wrong in one file: where, which field, what."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        from agentstage.escape import terminal  # a key or file name must not start a line

        file, path = terminal(self.file), terminal(self.path)
        where = file if self.line is None else f"{file}:{self.line}"
        return f"{where}: {path}: {self.message}" if path else f"{where}: {self.message}"

    def as_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class AgentstageError(Exception):
    """Base of every error a user sees as `error: ...` with an exit code."""

    exit_code = 70

    def __init__(self, message: str, hint: str | None = None,
                 payload: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.payload = payload  # what `--format json` prints on stdout for this outcome


class UsageError(AgentstageError):
    exit_code = 2


class NothingToPublish(AgentstageError):
    exit_code = 3


class InvalidConfig(AgentstageError):
    exit_code = 4

    def __init__(
        self, problems: Sequence[Problem], hint: str | None = None, message: str | None = None
    ) -> None:
        self.problems = list(problems)
        if message is None:
            message = str(self.problems[0]) if len(self.problems) == 1 else (
                f"{len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems)
            )
        super().__init__(message, hint)


class Conflict(AgentstageError):
    exit_code = 5


class NotFound(AgentstageError):
    exit_code = 6


class PolicyDenied(AgentstageError):
    exit_code = 7


class Unauthenticated(AgentstageError):
    """A server request without valid credentials (HTTP 401); the CLI never raises it."""

    exit_code = 2


def warn(message: str) -> None:
    """Say something the user should know that is not the command's result (stderr); what
    it quotes from the repository is shown escaped (see escape.message)."""
    from agentstage.escape import message as escaped

    print(f"warning: {escaped(message)}", file=sys.stderr)
