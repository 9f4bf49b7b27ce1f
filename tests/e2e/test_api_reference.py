"""/docs in a real browser (Debian's chromium through Playwright) against a real `bgtasks api`: Swagger UI,
served from the package, renders every operation of /openapi.json, and no request leaves 127.0.0.1.
A screenshot goes to test-artifacts/dashboard/."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.processes import Processes

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} missing: `apt-get install -y chromium` (the .ci/run script does)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


def test_docs_renders_every_operation_offline_from_the_dashboard_link(procs: Processes) -> None:
    _, base = procs.api()
    document = httpx.get(base + "/openapi.json", timeout=10).json()
    operations = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 30

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            requested: list[str] = []
            problems: list[str] = []
            context.on("request", lambda r: requested.append(r.url))
            page = context.new_page()
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            # A Content-Security-Policy refusal is reported on the console as an error.
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.set_default_timeout(20_000)

            page.goto(base + "/")
            page.get_by_role("link", name="API reference").click()
            page.wait_for_url(base + "/docs")
            blocks = page.locator(".opblock")
            expect(blocks.first).to_be_visible()
            expect(blocks).to_have_count(len(operations))
            for method, path in operations:
                block = page.locator(
                    f".opblock-summary:has(.opblock-summary-method:text-is('{method}'))"
                    f":has([data-path='{path}'])"
                )
                expect(block).to_have_count(1)
            # The streaming endpoints are in the reference like any other.
            for path in ("/api/subscribeToTask", "/api/events", "/api/ws"):
                expect(page.locator(f"[data-path='{path}']")).to_have_count(1)
            # Opened, an event stream shows its media type and an example message with an event name.
            page.locator(".opblock-summary:has([data-path='/api/events'])").click()
            opened = page.locator(".opblock:has(.opblock-summary [data-path='/api/events'])")
            expect(opened.locator("option[value='text/event-stream']").first).to_be_attached()
            expect(opened.locator(".response[data-code='200'] .highlight-code").first).to_contain_text(
                '"data"'
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "api-reference-1280.png"), full_page=False)
            opened.screenshot(path=str(ARTIFACTS / "api-reference-events-1280.png"))
            context.close()
        finally:
            browser.close()

    assert problems == [], problems
    outside = [u for u in requested if urlsplit(u).scheme != "data" and urlsplit(u).hostname != "127.0.0.1"]
    assert outside == [], outside
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in requested), requested
    assert any(u.endswith("/openapi.json") for u in requested), requested
