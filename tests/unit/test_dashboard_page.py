"""The dashboard page's server side: the embedded task types, states and searched fields, and their escaping (no I/O)."""

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


def test_the_searched_fields_the_page_gets_are_the_columns_the_list_filter_searches() -> None:
    import re
    from importlib import resources

    from bgtasks.store.tasks import SEARCHED_FIELDS

    sql = resources.files("bgtasks").joinpath("sql/tasks.sql").read_text(encoding="utf-8")
    columns = re.findall(r"\bt\.(\w+) ILIKE \$7", sql)  # task_filter's search condition, its one place
    camel = [re.sub(r"_(\w)", lambda m: m.group(1).upper(), c) for c in columns]
    assert camel == list(SEARCHED_FIELDS)
    html = dashboard._page(0)
    assert dashboard.SEARCH_PLACEHOLDER not in html
    assert dashboard.task_search_json() == {"fields": list(SEARCHED_FIELDS)}
