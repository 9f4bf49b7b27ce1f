"""The dashboard: `GET /` serves the single page (service/static/index.html, with the task types from the
registry embedded as JSON) under a strict Content-Security-Policy; `/static` serves its modules and CSS.

No build step and no CDN: every asset is a file in the package, so the page loads with no internet.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from ..catalog import CATALOG
from ..states import TERMINAL, Status, allowed
from ..store.tasks import SEARCHED_FIELDS

TYPES_PLACEHOLDER = "__BGTASKS_TASK_TYPES__"
STATES_PLACEHOLDER = "__BGTASKS_TASK_STATES__"
SEARCH_PLACEHOLDER = "__BGTASKS_TASK_SEARCH__"

# No inline script or style anywhere on the page: scripts and styles come from /static only. Setting
# element.style from a module (progress bar widths) is CSSOM, which style-src does not restrict.
CSP_DIRECTIVES = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "manifest-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def csp(**overrides: str) -> str:
    """The Content-Security-Policy of our pages, with some directives changed (style_src= for style-src)."""
    directives = {**CSP_DIRECTIVES, **{k.replace("_", "-"): v for k, v in overrides.items()}}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CSP = csp()
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


def task_types_json() -> list[dict[str, Any]]:
    """What the create form needs of each task type (published by workers, or defined in this process)."""
    return [
        {
            "name": t.name,
            "description": t.description,
            "needsProject": t.needs_project,
            "diagnostic": t.diagnostic,
            "maxRetries": t.max_retries,
            "payloadSchema": t.payload_schema,
        }
        for t in CATALOG.all()
    ]


def task_states_json() -> dict[str, Any]:
    """The state machine as the page needs it (service/states.py): the statuses, the final ones, and from
    which statuses each action is allowed, so the buttons the page offers are the moves the server accepts."""
    statuses = [s.value for s in Status]
    return {
        "statuses": statuses,
        "terminal": [s.value for s in Status if s in TERMINAL],
        "actions": {
            "cancel": [s.value for s in Status if s != Status.CANCELLED and allowed(s, Status.CANCELLED)],
            "retry": [s.value for s in Status if s in TERMINAL and allowed(s, Status.PENDING)],
            "delete": statuses,
        },
    }


def task_search_json() -> dict[str, Any]:
    """What a search (`q=`) matches, so the page filters live rows as the server filters a page: the fields
    (case-insensitive substring of any)."""
    return {"fields": list(SEARCHED_FIELDS)}


def _json_for_html(value: Any) -> str:
    """JSON safe inside a <script type="application/json"> element: nothing in it can close the element."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@lru_cache(maxsize=4)
def _page(version: int) -> str:
    html = resources.files("bgtasks").joinpath("static/index.html").read_text(encoding="utf-8")
    return (html.replace(TYPES_PLACEHOLDER, _json_for_html(task_types_json()))
            .replace(STATES_PLACEHOLDER, _json_for_html(task_states_json()))
            .replace(SEARCH_PLACEHOLDER, _json_for_html(task_search_json())))


async def index(request: Request) -> HTMLResponse:
    await CATALOG.ready(request.app.state.pool)
    return HTMLResponse(_page(CATALOG.version), headers=SECURITY_HEADERS)


def static_files() -> StaticFiles:
    return StaticFiles(packages=[("bgtasks", "static")])
