"""The dashboard tour's screenshots (docs/dashboard.md): taken by the browser tests, written into
docs/img/dashboard/ when BGTASKS_DOCS_SCREENSHOTS=1 (always into test-artifacts/dashboard/ too), so the
committed images are the page as the tests last drove it. tests/unit/test_dashboard_tour.py checks that each
is committed and that the page references exactly these."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS_IMG = ROOT / "docs" / "img" / "dashboard"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
ENV = "BGTASKS_DOCS_SCREENSHOTS"

# name -> what it shows; each is taken by one tour_shot() call in tests/e2e/.
SHOTS = {
    "page": "the top of the dashboard: header, overview, queue",
    "overview": "the overview: throughput and failures per minute, latency by type, tokens and cost",
    "tasks": "the task table with counts, filters and bulk actions",
    "detail": "a failed task's detail with its attempts",
    "workers": "the workers view: live, silent and stopped workers",
    "schedules": "the schedules view after a run now",
}


def tour_shot(target: Any, name: str) -> Path:
    """Screenshot `target` (a Playwright page: its viewport; or a locator: that element) as tour image `name`."""
    assert name in SHOTS, f"{name!r} is not a tour shot: add it to tests/tour.py SHOTS and docs/dashboard.md"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"tour-{name}.png"
    target.screenshot(path=str(out), animations="disabled")
    if os.environ.get(ENV) == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        (DOCS_IMG / f"{name}.png").write_bytes(out.read_bytes())
    return out
