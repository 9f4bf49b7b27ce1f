"""The dashboard's URLs in Chromium against a real `bgtasks api`: filters, sort, rows per page and page live in the
query string (a reload keeps them, `/?status=error` works), and a task's permalink (`/?task=<id>`), printed by the
CLI and behind every toast's "Details", opens its detail in a fresh browser. No worker runs: tasks stay where the
test puts them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from tests.e2e.test_dashboard import browser, create, expect, open_page, pytestmark, row
from tests.processes import BGTASKS, Processes

__all__ = ["browser", "open_page", "pytestmark"]  # the browser fixtures and marks of test_dashboard.py
REPO = Path(__file__).resolve().parents[2]


def console_errors(p: Any) -> Any:
    """Console errors fail the test too (test_dashboard's Page collects uncaught exceptions)."""
    p.page.on("console", lambda m: p.errors.append(f"console: {m.text}") if m.type == "error" else None)
    return p


def url_query(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def fail(database_url: str, task_ids: list[str], message: str = "failed on purpose") -> None:
    with psycopg.connect(database_url, autocommit=True) as sql:
        sql.execute("UPDATE background_tasks SET status = 'error', error_message = %s WHERE id = ANY(%s)",
                    (message, task_ids))


def test_filters_sort_and_page_survive_a_reload_and_a_status_link_filters(procs: Processes, open_page: Any) -> None:
    _, base = procs.api()
    # One by one, so that creation times order them (a batch shares one).
    tasks = [create(base, "noop", label=f"{'alpha' if i % 2 else 'beta'} {i:02d}") for i in range(60)]
    failed = [t["id"] for t in tasks[:4]]
    fail(procs.database_url, failed)

    p = console_errors(open_page(base))
    page = p.page
    page.goto(base + "/?status=error")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#filter-status")).to_have_value("error")
    expect(page.locator("#rows tr")).to_have_count(4)
    for task_id in failed:
        expect(row(page, task_id).locator(".badge")).to_have_text("Failed")
    expect(page.locator("#counts .status-error")).to_have_attribute("aria-pressed", "true")

    # Search, sort and rows per page go into the URL; a reload keeps them.
    page.get_by_role("button", name="Clear filters").click()
    expect(page.locator("#filter-status")).to_have_value("")
    page.locator("#q").fill("alpha")
    page.wait_for_url(lambda u: "q=alpha" in u)
    expect(page.locator("#rows tr")).to_have_count(30)
    page.locator("#sort").select_option("createdAt")
    page.locator("#page-size").select_option("25")
    expect(page.locator("#rows tr")).to_have_count(25)
    assert url_query(page) == {"q": ["alpha"], "sort": ["createdAt"], "limit": ["25"]}, page.url
    first = page.locator("#rows tr").first.locator(".task-title").inner_text()
    assert first == "alpha 01", first  # oldest first

    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    expect(page.locator("#rows tr")).to_have_count(5)  # 30 alphas, 25 a page
    assert url_query(page)["page"] == ["2"] and url_query(page)["cursor"], page.url

    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#q")).to_have_value("alpha")
    expect(page.locator("#sort")).to_have_value("createdAt")
    expect(page.locator("#page-size")).to_have_value("25")
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    expect(page.locator("#rows tr")).to_have_count(5)
    expect(page.locator("#rows tr").first.locator(".task-title")).to_have_text("alpha 51")
    p.shot("page-two-after-reload", widths=(1280,))
    page.get_by_role("button", name="Previous page").click()  # the reload kept the cursors before it
    expect(page.locator("#page-info")).to_contain_text("Page 1")
    expect(page.locator("#rows tr").first.locator(".task-title")).to_have_text("alpha 01")
    assert "cursor" not in url_query(page) and "page" not in url_query(page), page.url

    # The same link in a fresh browser: the filters and page 2, and "Previous page" goes to the first page.
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    link = page.url
    fresh = console_errors(open_page(base))
    fresh.page.goto(link)
    expect(fresh.page.locator("#page-info")).to_contain_text("Page 2")
    expect(fresh.page.locator("#rows tr")).to_have_count(5)
    fresh.page.get_by_role("button", name="Previous page").click()
    expect(fresh.page.locator("#page-info")).to_contain_text("Page 1")
    expect(fresh.page.locator("#rows tr")).to_have_count(25)

    # A link it cannot show (an unknown status, sort or size) falls back to the defaults, without an error.
    page.goto(base + "/?status=nonsense&sort=drop&limit=7")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#filter-status")).to_have_value("")
    expect(page.locator("#rows tr")).to_have_count(50)
    page.goto(base + "/?status=failed")  # seed two's word for error
    expect(page.locator("#filter-status")).to_have_value("error")
    expect(page.locator("#rows tr")).to_have_count(4)


def test_a_permalink_from_the_cli_or_a_toast_opens_the_task_in_a_fresh_browser(procs: Processes,
                                                                                open_page: Any) -> None:
    _, base = procs.api()
    out = subprocess.run([*BGTASKS, "submit", "noop", "--label", "linked from the cli", "--url", base],
                         env=procs.env(), capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert out.returncode == 0, out.stderr
    task_id = out.stdout.strip()  # stdout is the id alone; the link goes to stderr
    link = f"{base}/?task={task_id}"
    assert f"dashboard: {link}" in out.stderr, out.stderr
    shown = subprocess.run([*BGTASKS, "show", task_id, "--url", base], env=procs.env(), capture_output=True,
                           text=True, timeout=60, cwd=str(REPO))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].split() == ["dashboard", link], shown.stdout

    p = console_errors(open_page(base))
    page = p.page
    page.goto(link)
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#detail-h")).to_have_text("linked from the cli")
    expect(dialog).to_contain_text(task_id)
    expect(dialog.locator("a.permalink")).to_have_attribute("href", link)
    p.shot("permalink")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.wait_for_url(lambda u: "task=" not in u)  # the dialog's close event comes after it hides

    # Opening a detail from the table puts the task in the URL; a reload opens it again.
    other = create(base, "noop", label="opened from its row")
    page.get_by_role("button", name="Details of opened from its row").click()
    expect(dialog).to_be_visible()
    assert url_query(page)["task"] == [other["id"]], page.url
    page.reload()
    expect(page.get_by_role("dialog").locator("#detail-h")).to_have_text("opened from its row")
    page.keyboard.press("Escape")

    # A toast's "Details" is the task's permalink too, and opens the detail in place.
    fail(procs.database_url, [task_id], "broken for the toast")
    toast = page.locator(".toast", has_text="Failed: linked from the cli")
    expect(toast).to_be_visible(timeout=20_000)
    details = toast.get_by_role("link", name="Details")
    expect(details).to_have_attribute("href", link)
    details.click()
    expect(dialog.locator("#detail-h")).to_have_text("linked from the cli")
    expect(dialog.locator(".error-box")).to_contain_text("broken for the toast")
    assert url_query(page)["task"] == [task_id], page.url
