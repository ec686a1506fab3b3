"""Named stop points for crash tests: AGENTSTAGE_CRASH_AT=<name> kills the process there,
as kill -9 would, so tests can prove what a crash at each step leaves behind."""

from __future__ import annotations

import os


def crash_point(name: str) -> None:
    if os.environ.get("AGENTSTAGE_CRASH_AT") == name:
        os._exit(137)
