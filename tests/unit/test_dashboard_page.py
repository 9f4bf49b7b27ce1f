"""The dashboard page's server side: the embedded task types and their escaping (no I/O)."""

from __future__ import annotations

import json

from bgtasks.actors import TASK_TYPES
from bgtasks.api import dashboard


def test_every_registered_task_type_is_offered_by_the_create_form() -> None:
    names = [t["name"] for t in dashboard.task_types_json()]
    assert names == list(TASK_TYPES)


def test_embedded_json_cannot_close_its_script_element() -> None:
    text = dashboard._json_for_html({"x": "</script><script>alert(1)</script>&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"x": "</script><script>alert(1)</script>&"}


def test_the_page_has_the_task_types_and_no_inline_script() -> None:
    html = dashboard._page(0)
    assert dashboard.TYPES_PLACEHOLDER not in html
    assert '<script type="module" src="/static/app.js"></script>' in html
    # Every script element is a file of ours (src) or a JSON data block, which never runs: nothing inline.
    import re

    tags = re.findall(r"<script[^>]*>", html)
    assert tags and all(' src="/static/' in t or 'type="application/json"' in t for t in tags), tags
    assert html.count("<script") == len(tags)
    assert "unsafe-inline" not in dashboard.CSP
