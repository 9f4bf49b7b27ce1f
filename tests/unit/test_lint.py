"""Lint and types are part of the test command, so CI enforces them: ruff over the tree, mypy over the
installed `bgtasks` package, the service and the actors as the wheel ships them, and mypy over the tests
against the source tree (configuration in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
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


def _package_tree(root: Path) -> Path:
    """`bgtasks` laid out as the wheel installs it (pyproject's package-dir), as symlinks into the checkout, so
    mypy reads the tests' imports from the source whether the package is installed editable or not (mypy
    cannot follow setuptools' editable finder and would treat every `bgtasks` name as Any)."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, source in sorted(dirs.items(), key=lambda item: item[0].count(".")):
        target = root.joinpath(*package.split("."))
        if "." not in package:
            target.mkdir(parents=True)
            for child in (ROOT / source).iterdir():
                (target / child.name).symlink_to(child)
        elif not target.exists():
            target.symlink_to(ROOT / source)
    return root


def test_mypy_finds_nothing_in_tests(tmp_path: Path) -> None:
    env = {**os.environ, "MYPYPATH": str(_package_tree(tmp_path / "src"))}
    run = subprocess.run([sys.executable, "-m", "mypy", "tests"], cwd=ROOT, capture_output=True, text=True,
                         env=env)
    assert run.returncode == 0, run.stdout[-3000:]
