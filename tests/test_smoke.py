from __future__ import annotations

from pathlib import Path
from typing import Any


def test_validate_sample_repo(run: Any, repo: Path) -> None:
    result = run("validate", repo=repo)
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "3 agents valid"
