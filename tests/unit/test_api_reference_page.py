"""/docs, /openapi.json and the renderer's files answer without a credential even with development mode off,
and the page loads scripts only from the service (no I/O: the routes read no database)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from bgtasks.api.app import create_app
from bgtasks.settings import load_settings


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(database_url="postgresql://nobody@127.0.0.1:1/none", bgtasks_dev=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.example") as c:
        yield c


async def test_reference_document_and_assets_need_no_credential(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "<script>" not in page.text  # no inline script: the one of ours is /static/docs.js
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/static/docs.js"} <= set(assets)
    for path in [*assets, "/openapi.json"]:
        r = await client.get(path)
        assert r.status_code == 200 and r.content, path
    js = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in js.text[:2000]


async def test_only_the_renderer_files_the_page_uses_are_served(client: httpx.AsyncClient) -> None:
    # The bundle's own index.html points at an outside demo API: not served.
    for name in ("index.html", "swagger-ui-standalone-preset.js", "..%2F__init__.py"):
        r = await client.get(f"/docs/assets/{name}")
        assert r.status_code == 404 and r.json()["code"] == "not_found", name
