"""Issue 18 in the browser (Debian's chromium through Playwright): a task's detail shows the model's text growing
while the call streams (live output), then, once the task completed, what its model calls cost. Real `bgtasks
api` and `bgtasks worker` processes; the model is the test server streaming its answer over 4 s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bgtasks import db
from bgtasks.actors.generation import answer_schema
from tests.e2e.test_dashboard import Page, create, row
from tests.e2e.test_dashboard import browser as browser  # the fixture, shared
from tests.e2e.test_dashboard import pytestmark as dashboard_marks
from tests.fakes.openai_server import FakeOpenAI, streamed, valid_instance
from tests.processes import Processes
from tests.rows import one

pytestmark = dashboard_marks
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def model_server() -> Iterator[FakeOpenAI]:
    answer = valid_instance(answer_schema(1))
    answer["questions"][0]["explanation"] = " ".join(f"Reason {i} why this is right." for i in range(40))
    with FakeOpenAI() as fake:
        fake.always(streamed(json.dumps(answer), pieces=200, over_s=4.0))
        yield fake


def test_the_detail_shows_live_output_growing_then_the_tasks_cost(
        procs: Processes, browser: Any, model_server: FakeOpenAI, database_url: str) -> None:
    with db.sync_connect(database_url) as sql:
        sql.execute("INSERT INTO model_prices (model, prompt_per_million, completion_per_million, "
                    "cached_prompt_per_million) VALUES ('fake-model', 3, 15, 0.3)")
    env = {"OPENAI_BASE_URL": model_server.base_url, "OPENAI_API_KEY": "test-key", "BGTASKS_MODEL": "fake-model"}
    _, base = procs.api(None, **env)
    procs.worker(concurrency=2, **env)
    p = Page(browser, base, "live_output")
    try:
        page = p.open()
        task = create(base, "generation", {"amount": 1, "category": "Live output"}, label="live writer")
        row(page, task["id"]).get_by_role("button", name="Details of live writer").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_be_visible()
        output = dialog.locator(".detail-output pre")
        expect(output).to_be_visible(timeout=30_000)
        lengths: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and output.count() and len(set(lengths)) < 3:
            lengths.append(len(output.inner_text()))
            page.wait_for_timeout(150)
        grown = sorted(set(n for n in lengths if n > 0))
        assert len(grown) >= 3, f"the live output never grew while the call streamed: lengths {lengths}"
        p.shot("output-growing", widths=(1280,))

        expect(row(page, task["id"]).locator(".badge")).to_have_text("Completed", timeout=30_000)
        page.keyboard.press("Escape")
        row(page, task["id"]).get_by_role("button", name="Details of live writer").click()
        with db.sync_connect(database_url) as sql:
            spent = one(sql, "SELECT sum(cost_usd) AS usd FROM task_model_calls WHERE task_id = %s", (task["id"],))
        assert spent["usd"] and spent["usd"] > 0, spent  # the price table times the recorded usage
        cost = page.get_by_role("dialog").locator("dt", has_text="Cost").locator("xpath=following-sibling::dd[1]")
        expect(cost).to_have_text(f"${float(spent['usd']):.4f}", timeout=15_000)
        p.shot("cost", widths=(1280,))
    finally:
        p.close()
