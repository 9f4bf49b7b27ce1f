"""The API reference at `GET /docs`: Swagger UI rendering /openapi.json, every file served by us.

The renderer's files come from the `openapi-ui-bundles` package (Swagger UI 5, Apache-2.0), which installs
them as package data; nothing is fetched from a CDN, so the page works on a machine without internet. Only
the two files the page loads are served from the bundle (its own index.html points at an outside demo API).
"""

from __future__ import annotations

from pathlib import Path

import openapi_ui_bundles
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from ..errors import NotFound
from .dashboard import SECURITY_HEADERS, csp
from .errors import error_response

BUNDLE = Path(openapi_ui_bundles.swagger_ui.static_path)
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")

# Swagger UI sets style attributes from its markup (React), so styles need 'unsafe-inline'; scripts stay
# 'self' only: the page's one script of ours is /static/docs.js.
HEADERS = {**SECURITY_HEADERS, "content-security-policy": csp(style_src="'self' 'unsafe-inline'")}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>bgtasks · API reference</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="stylesheet" href="/static/docs.css">
</head>
<body>
  <nav class="docs-nav"><a href="/">← Dashboard</a> · <a href="/openapi.json">openapi.json</a></nav>
  <main id="swagger-ui"><p class="docs-loading">Loading the API reference…</p></main>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/static/docs.js"></script>
</body>
</html>
"""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE, headers=HEADERS)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return error_response(NotFound(f"no such file: /docs/assets/{name}"))
    return FileResponse(BUNDLE / name, headers={"cache-control": "public, max-age=3600"})
