"""The dashboard tour never drifts from the tests: every image docs/dashboard.md shows exists, every tour shot
(tests/tour.py) is committed as a PNG, referenced by the page and taken by a browser test, and no stale image
is left in docs/img/dashboard/."""

from __future__ import annotations

import re

from tests.tour import DOCS_IMG, ROOT, SHOTS

PAGE = ROOT / "docs" / "dashboard.md"
PNG = b"\x89PNG\r\n\x1a\n"


def _images() -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", PAGE.read_text(encoding="utf-8"))


def test_every_image_the_dashboard_page_shows_exists() -> None:
    images = _images()
    assert images, "docs/dashboard.md shows no image"
    missing = [i for i in images if not (PAGE.parent / i).is_file()]
    assert missing == [], f"docs/dashboard.md shows images that are not committed: {missing}"


def test_every_tour_shot_is_committed_shown_and_taken_by_a_browser_test() -> None:
    shown = {(PAGE.parent / i).resolve() for i in _images()}
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests" / "e2e").glob("test_*.py"))
    for name in SHOTS:
        path = DOCS_IMG / f"{name}.png"
        assert path.is_file() and path.read_bytes()[:8] == PNG, (
            f"{path.relative_to(ROOT)} missing: run the browser tests with BGTASKS_DOCS_SCREENSHOTS=1")
        assert path.resolve() in shown, f"docs/dashboard.md does not show {path.relative_to(ROOT)}"
        assert re.search(rf'tour_shot\(.*"{name}"\)', sources), f"no browser test takes the {name!r} shot"
    stale = sorted(p.name for p in DOCS_IMG.glob("*.png") if p.stem not in SHOTS)
    assert stale == [], f"images no test takes any more (delete them or add them to tests/tour.py): {stale}"
