"""Lint and types are part of the test command, so CI enforces them: ruff over the tree, mypy over the
installed `bgtasks` package, the service and the actors as the wheel ships them (configuration in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is in the test extra: pip install '.[test]'"
    run = subprocess.run([ruff, "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-1000:]


def test_mypy_finds_nothing_in_service_and_actors() -> None:
    run = subprocess.run([sys.executable, "-m", "mypy", "-p", "bgtasks"], cwd=ROOT, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout[-3000:]
