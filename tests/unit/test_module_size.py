"""Issue 20's rule, kept: no module in service/ or actors/ over 400 lines, so each one does one job that its
name says (docs/architecture.md's code map names the module for each). Split a module that grows past it by
job; do not squeeze lines."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def test_no_module_in_service_or_actors_is_over_400_lines() -> None:
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for folder in ("service", "actors") for path in (ROOT / folder).rglob("*.py")}
    assert len(sizes) > 50, sorted(sizes)  # the tree was found, not an empty glob
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not too_long, f"over {MAX_LINES} lines: {too_long}"
