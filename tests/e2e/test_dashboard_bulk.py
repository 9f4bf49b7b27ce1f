"""Totals and bulk actions by filter in Chromium against a real `bgtasks api`: "N matching", counts that follow
the search, "select all N matching", "retry all failed" and "clear failed/cancelled", each after one
confirmation that names the number. No worker runs: tasks stay where the test puts them."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.e2e.test_dashboard import api, browser, expect, open_page, pytestmark
from tests.e2e.test_dashboard_urls import console_errors
from tests.processes import Processes

__all__ = ["browser", "open_page", "pytestmark"]  # the browser fixtures and marks of test_dashboard.py


def confirmations(p: Any) -> list[str]:
    """Every confirm() the page asks, accepted (test_dashboard's Page accepts them all)."""
    asked: list[str] = []
    p.page.on("dialog", lambda d: asked.append(d.message))
    return asked


def counts(base: str, **params: str) -> dict[str, int]:
    return api(base, "GET", "/api/tasks/counts", params=params)["counts"]


def test_retry_all_failed_retries_300_failed_tasks_over_six_pages_after_one_confirmation(
        procs: Processes, open_page: Any) -> None:
    _, base = procs.api()
    for batch in range(3):
        api(base, "POST", "/api/tasks/batch", json={"tasks": [
            {"taskType": "noop", "label": f"{'north' if i % 2 else 'south'} {batch}-{i}"} for i in range(100)]})
    api(base, "POST", "/api/tasks/batch", json={"tasks": [{"taskType": "noop", "label": "still waiting"}] * 20})
    with psycopg.connect(procs.database_url, autocommit=True) as sql:
        sql.execute("UPDATE background_tasks SET status = 'error', error_message = 'failed on purpose' "
                    "WHERE label <> 'still waiting'")

    p = console_errors(open_page(base))
    asked = confirmations(p)
    page = p.page
    page.goto(base + "/?status=error")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#rows tr")).to_have_count(50)
    expect(page.locator("#matching")).to_have_text("300 matching")
    expect(page.locator("#page-info")).to_have_text("Page 1: 1–50 of 300 matching")
    expect(page.locator("#counts .status-error .count-n")).to_have_text("300")
    expect(page.locator("#counts .status-pending .count-n")).to_have_text("20")
    p.shot("three-hundred-failed", widths=(1280,))

    page.get_by_role("button", name="Retry all failed").click()
    expect(page.locator(".toast", has_text="Queued again: 300 tasks")).to_be_visible(timeout=30_000)
    assert asked == ["Retry all 300 failed tasks of every user?"], asked
    assert counts(base) == {"pending": 320, "processing": 0, "completed": 0, "error": 0, "cancelled": 0,
                            "total": 320}
    expect(page.locator("#counts .status-error .count-n")).to_have_text("0", timeout=20_000)
    expect(page.locator("#counts .status-pending .count-n")).to_have_text("320")
    expect(page.locator("#rows tr")).to_have_count(0, timeout=20_000)  # the failed filter: none are left
    expect(page.locator("#retry-failed")).to_be_disabled()


def test_counts_follow_the_search_and_select_all_matching_acts_on_every_page(
        procs: Processes, open_page: Any) -> None:
    _, base = procs.api()
    api(base, "POST", "/api/tasks/batch", json={"tasks": [
        {"taskType": "noop", "label": f"{'north' if i % 2 else 'south'} {i}"} for i in range(240)]})
    with psycopg.connect(procs.database_url, autocommit=True) as sql:
        sql.execute("UPDATE background_tasks SET status = 'error' WHERE label ~ ' [0-9]*[05]$'")  # 48 of 240
        sql.execute("UPDATE background_tasks SET status = 'cancelled' WHERE label ~ ' [0-9]*[27]$'")  # 48

    p = console_errors(open_page(base))
    asked = confirmations(p)
    page = p.page
    page.goto(base + "/?q=north&limit=25")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # The counts follow the search (north: the odd numbers, 120; 24 end in 5, 24 in 7).
    expect(page.locator("#matching")).to_have_text("120 matching")
    expect(page.locator("#counts .status-all .count-n")).to_have_text("120")
    expect(page.locator("#counts .status-error .count-n")).to_have_text("24")
    expect(page.locator("#counts .status-cancelled .count-n")).to_have_text("24")
    expect(page.locator("#counts .status-pending .count-n")).to_have_text("72")

    # The page ticked: "select all 120 matching"; cancelling them cancels the 72 pending ones, on every page.
    page.get_by_label("Select all tasks on this page").check()
    expect(page.locator("#selected-count")).to_have_text("25 selected")
    page.get_by_role("button", name="Select all 120 matching").click()
    expect(page.locator("#selected-count")).to_have_text("All 120 matching selected")
    p.shot("all-matching-selected", widths=(1280,))
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.locator(".toast", has_text="Cancel all matching: 72 tasks")).to_be_visible(timeout=30_000)
    assert asked == ["Cancel all 72 pending or running matching tasks of every user, matching the filters?"], asked
    assert counts(base, q="north") == {"pending": 0, "processing": 0, "completed": 0, "error": 24,
                                       "cancelled": 96, "total": 120}
    assert counts(base, q="south")["pending"] == 72  # outside the search: untouched
    expect(page.locator("#counts .status-cancelled .count-n")).to_have_text("96", timeout=20_000)

    # "Clear failed/cancelled" under the search deletes the 120 north tasks, and names them.
    page.get_by_role("button", name="Clear failed/cancelled").click()
    expect(page.locator(".toast", has_text="Cleared failed and cancelled: 120 tasks")).to_be_visible(timeout=30_000)
    assert asked[1] == ("Delete all 120 failed and cancelled tasks of every user, matching the filters? "
                        "This cannot be undone."), asked
    assert counts(base)["total"] == 120 and counts(base, q="north")["total"] == 0
    expect(page.locator("#matching")).to_have_text("0 matching", timeout=20_000)


def test_the_bulk_endpoint_answers_a_bad_filter_with_a_4xx_naming_it(procs: Processes) -> None:
    import httpx

    _, base = procs.api()
    for body, field in (({"filter": {"status": "asleep"}}, "filter.status"), ({"filter": {"colour": "red"}}, "filter.colour"),
                        ({"filter": {"q": 5}}, "filter.q"), ({"filter": "all"}, "filter")):
        r = httpx.post(base + "/api/tasks/bulk/retry", json=body, timeout=10)
        assert 400 <= r.status_code < 500 and r.json()["field"] == field, (body, r.status_code, r.text)
