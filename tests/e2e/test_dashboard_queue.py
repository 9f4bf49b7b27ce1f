"""The dashboard's smaller points in Chromium against a real `bgtasks api`: every user reads the queue's status,
"last claim N s ago" ticks, stopping the queue asks first and a stopped queue shows a page-wide banner to every
user; a finished task shows no stale progress note; an AI result leads with its summary; the statuses and the
actions they allow come from the server. No worker runs: tasks stay where the test puts them."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg

from tests.e2e.test_dashboard import api, browser, create, expect, make_key, open_page, pytestmark, row
from tests.e2e.test_dashboard_bulk import confirmations
from tests.e2e.test_dashboard_urls import console_errors
from tests.processes import Processes

__all__ = ["browser", "open_page", "pytestmark"]  # the browser fixtures and marks of test_dashboard.py


def test_every_user_sees_the_queue_and_a_stopped_queue_is_said_across_the_page(procs: Processes,
                                                                               open_page: Any) -> None:
    _, base = procs.api()
    alice_key = make_key(procs, "alice")
    with psycopg.connect(procs.database_url, autocommit=True) as sql:  # as a worker's claim stamps it
        sql.execute("UPDATE task_queue_settings SET last_poll_at = now() - interval '8 seconds'")

    alice = console_errors(open_page(base))
    page = alice.open(key=alice_key)
    expect(page.locator("#queue-panel")).to_be_visible()
    expect(page.locator("#queue-state")).to_have_text("Running")
    expect(page.locator("#queue-stop")).to_be_hidden()  # read-only for a user
    expect(page.locator("#queue-max")).to_be_hidden()
    expect(page.locator("#queue-banner")).to_be_hidden()
    # "last claim N s ago" moves with the clock, with no event from the server.
    poll = page.locator("#queue-poll")
    expect(poll).to_have_text(re.compile(r"last claim \d+ s ago"))
    before = poll.inner_text()
    expect(poll).not_to_have_text(before, timeout=10_000)
    expect(poll).to_have_text(re.compile(r"last claim \d+ s ago"))

    root = console_errors(open_page(base))
    asked = confirmations(root)
    admin = root.open()
    admin.get_by_role("button", name="Stop queue").click()
    expect(admin.locator("#queue-state")).to_have_text("Stopped")
    assert asked == ["Stop the queue? No new task starts on any worker until it is started again; "
                     "running tasks finish."], asked
    assert api(base, "GET", "/api/queue")["queueSettings"]["isActive"] is False
    banner = admin.locator("#queue-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("The queue is stopped.")
    root.shot("queue-stopped-banner", widths=(1280,))

    # The user's page hears it live (the queue event now reaches every stream): the banner, without a button.
    expect(page.locator("#queue-banner")).to_be_visible(timeout=15_000)
    expect(page.locator("#queue-state")).to_have_text("Stopped")
    expect(page.locator("#queue-banner-start")).to_be_hidden()
    alice.shot("queue-stopped-user", widths=(1280,))

    banner.get_by_role("button", name="Start queue").click()
    expect(banner).to_be_hidden()
    expect(page.locator("#queue-banner")).to_be_hidden(timeout=15_000)
    assert api(base, "GET", "/api/queue")["queueSettings"]["isActive"] is True
    assert len(asked) == 1, "starting the queue asks nothing"


def test_a_finished_task_drops_its_progress_note_and_an_ai_result_leads_with_its_summary(
        procs: Processes, open_page: Any) -> None:
    _, base = procs.api()
    running = create(base, "noop", label="still going")
    done = create(base, "noop", label="project docs")
    result = {"summary": "A small site generator.", "documents": [{"path": "README.md", "content": "# Site"}],
              "source": {"projectId": "p1", "filesRead": 3, "files": ["a.py", "b.py", "c.py"]}}
    with psycopg.connect(procs.database_url, autocommit=True) as sql:
        sql.execute("UPDATE background_tasks SET description = 'Reading project files', progress = 40 "
                    "WHERE id = %s", (running["id"],))
        sql.execute("UPDATE background_tasks SET status = 'completed', description = 'Saving', progress = 100, "
                    "result_data = %s WHERE id = %s", (json.dumps(result), done["id"]))
        stored = sql.execute("SELECT result_data::text FROM background_tasks WHERE id = %s",
                             (done["id"],)).fetchone()
    assert stored and stored[0].index('"source"') < stored[0].index('"summary"'), "jsonb stores source first"

    p = console_errors(open_page(base))
    page = p.open()
    expect(row(page, running["id"]).locator(".note")).to_have_text("Reading project files")
    expect(row(page, done["id"]).locator(".badge")).to_have_text("Completed")
    expect(row(page, done["id"]).locator(".note")).to_have_text("")
    page.get_by_role("button", name="Details of project docs").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".result-box")).to_be_visible()
    expect(dialog.locator(".detail-live .note")).to_have_count(0)
    assert "Saving" not in dialog.inner_text()
    labels = dialog.locator(".result-box .result > dl > dt").all_inner_texts()
    assert labels == ["Summary", "Documents", "Source"], labels
    p.shot("ai-result-summary-first", widths=(1280,))

    # The statuses and the actions each allows are the server's (service/states.py), embedded in the page.
    states = json.loads(page.locator("#task-states").text_content() or "null")
    assert states == {"statuses": ["pending", "processing", "completed", "error", "cancelled"],
                      "terminal": ["completed", "error", "cancelled"],
                      "actions": {"cancel": ["pending", "processing"], "retry": ["error", "cancelled"],
                                  "delete": ["pending", "processing", "completed", "error", "cancelled"]}}
    expect(dialog.get_by_role("button", name="Retry project docs")).to_have_count(0)  # completed is final
    expect(dialog.get_by_role("button", name="Delete project docs")).to_be_visible()
