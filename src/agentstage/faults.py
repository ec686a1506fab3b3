"""Named stop points for crash and race tests: AGENTSTAGE_CRASH_AT=<name> kills the process
there, as kill -9 would, so tests can prove what a crash at each step leaves behind;
AGENTSTAGE_PAUSE_AT=<name> holds it there (announcing it in AGENTSTAGE_PAUSE_FILE.reached)
until the file AGENTSTAGE_PAUSE_FILE exists, so a test can act inside a window."""

from __future__ import annotations

import os
import time


def crash_point(name: str) -> None:
    if os.environ.get("AGENTSTAGE_CRASH_AT") == name:
        os._exit(137)


def pause_point(name: str) -> None:
    if os.environ.get("AGENTSTAGE_PAUSE_AT") != name:
        return
    release = os.environ["AGENTSTAGE_PAUSE_FILE"]
    with open(release + ".reached", "w"):
        pass
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
