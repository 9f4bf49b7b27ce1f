"""The dashboard's operations panels in Chromium against real API and worker processes: the overview agrees
with /api/analytics and /api/usage for the window it shows. Every page here fails its test on a console
error or on a request to anywhere but 127.0.0.1."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.e2e.test_dashboard import Page, api, browser, create, expect, make_key, open_page, row, service  # noqa: F401  (browser, open_page, service: fixtures)
from tests.processes import wait_until
from tests.tour import tour_shot

pytestmark = [pytest.mark.browser]


def watched(p: Page) -> Page:
    """`p`, failing its test also on a console error and on a request to anywhere but 127.0.0.1."""

    def console(message: Any) -> None:
        if message.type == "error":
            p.errors.append(f"console: {message.text}")

    def request(req: Any) -> None:
        url = urlsplit(req.url)
        if url.scheme not in ("data", "blob") and url.hostname != "127.0.0.1":
            p.errors.append(f"request left 127.0.0.1: {req.url}")

    p.page.on("console", console)
    p.page.on("request", request)
    return p


@pytest.fixture
def ops_page(open_page: Any) -> Any:  # noqa: F811
    return lambda base, **kw: watched(open_page(base, **kw))


def seconds(value: float | None) -> str:
    """As overview.js prints seconds."""
    if value is None:
        return "—"
    return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} s"


def usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


READ_OVERVIEW = """() => {
  const s = document.getElementById('overview');
  const rows = (id) => [...document.querySelectorAll(`#${id} tr`)].map((tr) => ({
    key: tr.dataset.key, cells: [...tr.querySelectorAll('td.num')].map((td) => [td.dataset.value, td.textContent]),
  }));
  const text = (id) => document.getElementById(id).textContent;
  return { since: s.dataset.since, until: s.dataset.until, latency: rows('ov-latency-rows'),
           usage: rows('ov-usage-rows'), completed: text('ov-completed'), failed: text('ov-failed'),
           cancelled: text('ov-cancelled'), tokens: text('ov-tokens'), cost: text('ov-cost'),
           bars: document.querySelectorAll('#ov-chart canvas').length };
}"""


def test_the_overview_agrees_with_the_analytics_api_for_the_window_it_shows(
        procs: Any, service: str, ops_page: Any) -> None:  # noqa: F811
    done = [create(service, "noop", label=f"ok {i}") for i in range(3)]
    bad = [create(service, "flaky", {"failures": 9, "permanent": True, "message": "the model said no"},
                  label=f"doomed {i}", maxRetries=0) for i in range(2)]
    wait_until(lambda: all(api(service, "GET", f"/api/tasks/{t['id']}")["task"]["status"] in ("completed", "error")
                           for t in done + bad), 30, "five tasks finished")
    with psycopg.connect(procs.database_url, autocommit=True) as sql:  # model calls, as a worker records them
        for task, tokens in ((done[0], 1200), (done[1], 300), (bad[0], 50)):
            sql.execute("INSERT INTO task_model_calls (task_id, user_id, task_type, attempt, model, prompt_tokens, "
                        "completion_tokens, total_tokens, duration_ms, cost_usd) SELECT id, user_id, task_type, 1, "
                        "'m-test', %s, %s, %s, 10, %s / 100000.0 FROM background_tasks WHERE id = %s",
                        (tokens, tokens // 2, tokens + tokens // 2, tokens, task["id"]))

    p = ops_page(service)
    page = p.open()
    overview = page.locator("#overview")
    expect(overview).to_have_attribute("data-until", re.compile(r"^\d{4}-"))
    expect(page.locator("#ov-latency-rows tr")).to_have_count(2)
    seen = page.evaluate(READ_OVERVIEW)
    window = {"since": seen["since"], "until": seen["until"]}
    stats = api(service, "GET", "/api/analytics", params={**window, "groupBy": "type", "bucket": "minute"})
    usage = api(service, "GET", "/api/usage", params=window)["usage"]

    points = stats["series"]["points"]
    assert len(points) == 60 and stats["series"]["bucket"] == "minute"
    assert seen["completed"] == str(sum(pt["completed"] for pt in points)) == "3"
    assert seen["failed"] == str(sum(pt["failed"] for pt in points)) == "2"
    assert seen["cancelled"] == "0" and seen["bars"] >= 1
    expected_latency = [{"key": g["key"], "cells": [
        [str(g[k]), str(g[k])] for k in ("total", "completed", "failed")] + [
        ["" if x is None else str(x), seconds(x)] for x in (
            g["durationSeconds"]["p50"], g["durationSeconds"]["p95"],
            g["queueWaitSeconds"]["p50"], g["queueWaitSeconds"]["p95"])]} for g in stats["groups"]]
    assert [g["key"] for g in stats["groups"]] == ["flaky", "noop"]
    assert _numbers(seen["latency"]) == _numbers(expected_latency)
    assert [[c[1] for c in r["cells"]] for r in seen["latency"]] == [
        [c[1] for c in r["cells"]] for r in expected_latency]

    expected_usage = [{"key": f"{u['userId']} {u['taskType']}", "cells": [
        [str(u[k]), str(u[k])] for k in ("tasks", "calls", "totalTokens")] + [[str(u["costUsd"]), usd(u["costUsd"])]]}
        for u in usage]
    assert len(usage) == 2 and sum(u["totalTokens"] for u in usage) == 2325
    assert _numbers(seen["usage"]) == _numbers(expected_usage)
    assert seen["tokens"] == "2325"
    assert seen["cost"] == usd(sum(u["costUsd"] for u in usage))
    p.shot("overview", widths=(1280, 390))

    # The tour (docs/dashboard.md): the page's top, the overview, the table, a failed task's detail.
    tour_shot(page, "page")
    tour_shot(overview, "overview")
    tour_shot(page.locator("#tasks"), "tasks")
    row(page, bad[0]["id"]).get_by_role("button", name="Details of doomed 0").click()
    expect(page.get_by_role("dialog").locator(".error-box")).to_contain_text("the model said no")
    tour_shot(page.locator("#detail"), "detail")
    page.keyboard.press("Escape")


def _numbers(rows: list[dict[str, Any]]) -> list[tuple[str, list[float | None]]]:
    """Rows as (key, raw numbers): data-value strings and the API's numbers compared as numbers."""
    return [(r["key"], [None if c[0] in ("", "None") else float(c[0]) for c in r["cells"]]) for r in rows]


def test_the_workers_view_shows_live_silent_and_stopped_workers_as_the_api_does(
        procs: Any, service: str, ops_page: Any) -> None:  # noqa: F811
    stopped = procs.worker(concurrency=3)
    stopped.stop()
    crashed = procs.worker(concurrency=1)
    crashed.kill()
    with psycopg.connect(procs.database_url, autocommit=True) as sql:
        # A killed worker goes silent once its heartbeat is older than worker_stale_after() (90 s): age it
        # rather than wait. The other two are real: one stopped cleanly, the service's one runs.
        sql.execute("UPDATE bgtasks_workers SET heartbeat_at = now() - interval '5 minutes' "
                    "WHERE stopped_at IS NULL AND pid = %s", (crashed.popen.pid,))
    slow = create(service, "sleep", {"seconds": 60, "steps": 60}, label="slow")
    wait_until(lambda: api(service, "GET", f"/api/tasks/{slow['id']}")["task"]["status"] == "processing", 30,
               "the sleep task running")

    p = ops_page(service)
    page = p.open()
    panel = page.locator("#workers-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#workers-rows tr")).to_have_count(3)
    expect(page.locator("#workers-rows tr[data-state='live'] td").nth(2)).to_have_text("1")
    listed = api(service, "GET", "/api/workers")["workers"]
    shown = page.evaluate("""() => [...document.querySelectorAll('#workers-rows tr')].map((tr) => [
        tr.dataset.id, ...[...tr.querySelectorAll('td')].slice(0, 4).map((td) => td.textContent)])""")
    assert shown == [[w["workerId"], {"live": "Live", "silent": "Silent", "stopped": "Stopped"}[w["state"]],
                      str(w["concurrency"]), str(w["running"]),
                      ", ".join(w["taskTypes"]) if w["taskTypes"] else "any type"] for w in listed]
    assert [w["state"] for w in listed] == ["live", "silent", "stopped"]
    assert [w["concurrency"] for w in listed] == [2, 1, 3]
    silent_age = page.locator("#workers-rows tr[data-state='silent'] td").nth(4)
    expect(silent_age).to_have_text(re.compile(r"^5 min \d\d s ago$"))
    expect(page.locator("#workers-summary")).to_have_text(re.compile(r"^1 live \(2 slots\), 1 running, 1 silent"))
    p.shot("workers", widths=(1280,))
    tour_shot(panel, "workers")
    api(service, "POST", f"/api/tasks/{slow['id']}/cancel", json={})

    # A user who is not a superuser never sees the view, and the page never asks for it (no 403 logged).
    user = ops_page(service)
    asked: list[str] = []
    user.page.on("request", lambda r: asked.append(urlsplit(r.url).path))
    user_page = user.open(key=make_key(procs, "alice"))
    expect(user_page.locator("#schedules-panel")).to_be_visible()
    expect(user_page.locator("#workers-panel")).to_be_hidden()
    assert "/api/workers" not in asked


def test_the_schedules_view_enables_disables_and_runs_a_schedule_now(service: str, ops_page: Any) -> None:  # noqa: F811
    made = api(service, "POST", "/api/schedules", json={"name": "nightly", "taskType": "noop", "cron": "0 3 * * *",
                                                          "label": "nightly digest"})["schedule"]
    p = ops_page(service)
    page = p.open()
    line = page.locator("#schedules-rows tr[data-name='nightly']")
    expect(line).to_be_visible()
    assert made["nextRunAt"] is None  # the worker's scheduler sets it at its next tick (twice a second)
    next_run = wait_until(lambda: api(service, "GET", "/api/schedules/nightly")["schedule"]["nextRunAt"], 30,
                          "the scheduler's next run of nightly")
    page.locator("#schedules-refresh").click()
    expect(line.locator(".sched-next")).to_contain_text(next_run[:16].replace("T", " ") + " UTC (in ")

    page.get_by_label("Enabled: nightly").uncheck()
    expect(page.locator("#schedules-status")).to_have_text("nightly disabled.")
    expect(line.locator(".sched-next")).to_have_text("disabled")
    assert api(service, "GET", "/api/schedules/nightly")["schedule"]["enabled"] is False
    page.get_by_label("Enabled: nightly").check()
    expect(page.locator("#schedules-status")).to_have_text("nightly enabled.")
    assert api(service, "GET", "/api/schedules/nightly")["schedule"]["enabled"] is True

    page.get_by_role("button", name="Run nightly now").click()
    link = page.locator("#schedules-status a")
    expect(link).to_have_text(re.compile(r"^task_"))
    task_id = link.text_content()
    assert task_id
    wait_until(lambda: api(service, "GET", f"/api/tasks/{task_id}")["task"]["status"] == "completed", 30,
               "the task run now completed")
    task = api(service, "GET", f"/api/tasks/{task_id}")["task"]
    assert (task["taskType"], task["label"]) == ("noop", "nightly digest")
    wait_until(lambda: api(service, "GET", "/api/schedules/nightly")["schedule"]["nextRunAt"], 30,
               "the scheduler's next run of nightly, enabled again")
    page.locator("#schedules-refresh").click()
    expect(line.locator(".sched-next")).to_contain_text(" UTC (in ")
    p.shot("schedules", widths=(1280,))
    page.locator("#toasts .toast").evaluate_all("ts => ts.forEach((t) => t.remove())")  # not over the shot
    tour_shot(page.locator("#schedules-panel"), "schedules")
    link.click()  # the task's permalink opens its detail
    expect(page.get_by_role("dialog")).to_contain_text(task_id)
