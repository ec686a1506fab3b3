"""The README's Serve section, followed word for word: its "seed's week over HTTP" block
run by bash with curl against a real server (on a free port instead of 8377, the one
change: `serve --port N`), and the git state it leaves checked."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import git

README = (Path(__file__).parent.parent / "README.md").read_text()


def block_after(marker: str) -> str:
    start = README.index(marker)
    found = re.search(r"```sh\n(.*?)```", README[start:], re.S)
    assert found is not None, marker
    return found.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use curl")
def test_the_seeds_week_over_http_works_as_written(tmp_path: Path) -> None:
    script = block_after("The seed's week, over HTTP")
    assert "serve &" in script and "8377" in script
    port = str(free_port())
    script = script.replace("serve &", f"serve --port {port} &").replace("8377", port)
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None or proc.returncode != 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the server, when the script failed
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert '"error"' not in out, out
    assert out.rstrip().endswith("304"), out
    for tag in ("support-bot/v1", "support-bot/v2", "support-bot/v3"):
        assert f'"tag":"{tag}"' in out, tag
    repo = tmp_path / "my-agents"
    assert git(repo, "tag", "--list").split() == ["support-bot/v1", "support-bot/v2",
                                                  "support-bot/v3"]
    assert git(repo, "rev-parse", "production/support-bot") == \
        git(repo, "rev-parse", "support-bot/v3^{commit}")
    subjects = git(repo, "log", "--format=%s", "staging").splitlines()
    assert subjects[0].startswith("Revert support-bot/v2"), subjects
    assert "agentstage: stopped" in done.stderr  # kill %1 is a clean SIGTERM
