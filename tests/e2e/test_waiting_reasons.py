"""Why is my task still pending? Each waiting reason made real against running `bgtasks api` and `bgtasks
worker` processes, then read at psql (pending_tasks_why), in the API (waitingFor), in the CLI (show, ls) and in
the dashboard (the task's permalink in Chromium: the list row's state and the detail's "Waiting for"): all four
say the same thing. A failing actor's traceback reaches the task's detail, and the worker's log has one line for
the failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.e2e.test_dashboard import browser, open_page, pytestmark, row
from tests.e2e.test_dashboard import expect as see
from tests.e2e.test_dashboard_urls import console_errors
from tests.fakes.openai_server import FakeOpenAI
from tests.processes import Processes, wait_until
from tests.rows import one

__all__ = ["browser", "open_page", "pytestmark"]  # the browser fixtures and marks of test_dashboard.py

BGTASKS = str(Path(sys.executable).parent / "bgtasks")


def before_the_countdown(why: str) -> str:
    """A reason's words without its countdown ("… (in 1 h 58 m)", "…: runs again in 42 s"), which moves."""
    return why.split(" (in ")[0].split(": runs")[0]


class Service:
    def __init__(self, procs: Processes, base_url: str, database_url: str, worker_log: Path, page: Any) -> None:
        self.procs, self.base_url, self.database_url, self.worker_log = procs, base_url, database_url, worker_log
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.sql = psycopg.connect(database_url, autocommit=True, row_factory=dict_row)
        self.page = page  # one dashboard page (one browser) for the whole test

    def cli(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "OPENAI_", "DATABASE_URL"))}
        env["BGTASKS_URL"] = self.base_url
        done = subprocess.run([BGTASKS, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"bgtasks {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout

    def create(self, task_type: str, **fields: Any) -> str:
        r = self.http.post("/api/tasks", json={"taskType": task_type, **fields})
        assert r.status_code in (200, 201), r.text
        return str(r.json()["task"]["id"])

    def insert(self, task_type: str, user_id: str, **columns: Any) -> str:
        cols = {"task_type": task_type, "user_id": user_id, **columns}
        names = ", ".join(cols)
        marks = ", ".join(["%s"] * len(cols))
        row = self.sql.execute(f"INSERT INTO background_tasks ({names}) VALUES ({marks}) RETURNING id",
                               [json.dumps(v) if isinstance(v, dict) else v for v in cols.values()]).fetchone()
        assert row is not None
        return str(row["id"])

    def psql_reason(self, task_id: str) -> dict[str, Any] | None:
        return self.sql.execute("SELECT reason, why FROM pending_tasks_why WHERE id = %s", (task_id,)).fetchone()

    def expect(self, task_id: str, reason: str, *words: str, state: str) -> dict[str, Any]:
        """The same reason and words at psql, in GET /api/tasks/{id}, in `bgtasks show` and `bgtasks ls`, and in
        the dashboard at the task's permalink: its row's state starts with `state` ("Blocked: 1/1 running") and
        the detail's "Waiting for" is psql's sentence."""
        at_psql = wait_until(lambda: (r := self.psql_reason(task_id)) and r["reason"] == reason and r, 30,
                             f"pending_tasks_why to say {reason} for {task_id}")
        for word in words:
            assert word in at_psql["why"], (word, at_psql)
        detail = self.http.get(f"/api/tasks/{task_id}").json()
        waiting = detail["task"]["waitingFor"]
        assert waiting["reason"] == reason, detail
        assert before_the_countdown(waiting["text"]) == before_the_countdown(at_psql["why"])
        shown = self.cli("show", task_id)
        assert any(ln.startswith("waitingFor") and at_psql["why"].split(" (in ")[0][:40] in ln
                   for ln in shown.splitlines()), shown
        listed = self.cli("ls", "--status", "pending", "--limit", "100")
        line = next(ln for ln in listed.splitlines() if ln.startswith(task_id))
        assert at_psql["why"][:30] in line, listed
        self.page.goto(f"{self.base_url}/?task={task_id}")
        dialog = self.page.get_by_role("dialog")
        see(dialog.locator(".waiting-text")).to_be_visible()
        shown_why = dialog.locator(".waiting-text").inner_text()
        assert before_the_countdown(shown_why) == before_the_countdown(at_psql["why"]), (shown_why, at_psql)
        badge = row(self.page, task_id).locator(".badge")
        see(badge).to_have_attribute("data-reason", reason)
        assert badge.inner_text().startswith(state), (badge.inner_text(), state)
        assert before_the_countdown(badge.get_attribute("title") or "") == before_the_countdown(at_psql["why"])
        return dict(detail)


@pytest.fixture
def model_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def service(procs: Processes, database_url: str, model_server: FakeOpenAI, open_page: Any) -> Iterator[Service]:
    # Model calls go to the local test server (none should be made: the budget holds them before any call).
    worker = procs.worker(concurrency=2, BGTASKS_LOG_LEVEL="INFO", OPENAI_BASE_URL=model_server.base_url,
                          OPENAI_API_KEY="test-key", BGTASKS_MODEL="fake-model")
    _, base = procs.api()
    p = console_errors(open_page(base))
    requested: list[str] = []
    p.context.on("request", lambda r: requested.append(r.url))
    s = Service(procs, base, database_url, worker.log, p.page)
    yield s
    s.http.close()
    s.sql.close()
    outside = [u for u in requested if urlsplit(u).scheme != "data" and urlsplit(u).hostname != "127.0.0.1"]
    assert outside == [], outside


def test_every_waiting_reason_reads_the_same_at_psql_in_the_api_in_the_cli_and_in_the_dashboard(
        service: Service, model_server: FakeOpenAI) -> None:
    s = service
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    scheduled = s.create("noop", runAt=later, label="later")
    s.expect(scheduled, "scheduled", "scheduled for later", "in 1 h 5", state="Scheduled · in 1 h 5")

    waiting = s.create("noop", dependsOn=[scheduled])
    detail = s.expect(waiting, "dependencies", "waiting on 1 dependency", scheduled, state="Waiting on 1 task")
    assert detail["task"]["dependsOn"] == [scheduled] and detail["task"]["waitingFor"]["taskIds"] == [scheduled]
    assert s.http.get(f"/api/tasks/{scheduled}").json()["task"]["dependents"] == [waiting]

    orphan = s.insert("orphan-type", "local")
    s.expect(orphan, "no_worker", "no live worker serves task type orphan-type",
             state="No worker for orphan-type")

    s.sql.execute("INSERT INTO task_type_limits (task_type, max_running) VALUES ('add', 0)")
    typed = s.create("add", payload={"start": 1})
    s.expect(typed, "type_limit", "held by the type's limit: 0/0 running", state="Type limit: 0/0 running")

    # One sleep of user 'busy' runs on the worker; the user's limit of 1 holds the next.
    s.sql.execute("INSERT INTO user_limits (user_id, max_running) VALUES ('busy', 1)")
    running = s.insert("sleep", "busy", payload={"seconds": 60, "steps": 60})
    wait_until(lambda: one(s.sql, "SELECT status FROM background_tasks WHERE id = %s",
                                     (running,))["status"] == "processing", 30, "the sleep to start")
    held = s.insert("sleep", "busy", payload={"seconds": 0.1})
    s.expect(held, "user_limit", "held by the user's limit: 1/1 running", state="Blocked: 1/1 running")

    s.sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 1")
    behind = s.insert("sleep", "someone", payload={"seconds": 0.1})
    s.expect(behind, "global_limit", "held by the global limit: 1/1 running", state="Queue full: 1/1 running")

    s.sql.execute("SELECT pause_queue()")
    s.expect(behind, "queue_stopped", "queue stopped", state="Queue stopped")
    s.sql.execute("SELECT resume_queue()")
    s.sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = NULL")
    wait_until(lambda: s.psql_reason(behind) is None, 30, "the task behind the limits to run once they are lifted")

    s.sql.execute("UPDATE task_queue_settings SET retry_base_delay_ms = 3600000, retry_max_delay_ms = 7200000")
    flaky = s.create("flaky", payload={"failures": 2, "message": "planned failure for the traceback"})
    detail = s.expect(flaky, "retry_backoff", "backing off before retry 1 of 3", state="Retry 1 of 3 · in ")
    [attempt] = detail["attempts"]
    assert attempt["errorType"] == "RuntimeError" and attempt["outcome"] == "retried"
    assert attempt["traceback"].startswith("Traceback (most recent call last):"), attempt
    assert "diagnostics.py" in attempt["traceback"] and attempt["traceback"].rstrip().endswith(
        "RuntimeError: planned failure for the traceback")
    shown = s.cli("show", flaky)
    assert "attempt 1 (retried" in shown and "RuntimeError: planned failure for the traceback" in shown
    assert "RuntimeError: RuntimeError" not in shown and "  Traceback (most recent call last):" in shown
    log = s.worker_log.read_text()
    failure_lines = [ln for ln in log.splitlines() if flaky in ln and "failed" in ln]
    assert len(failure_lines) == 1, log
    assert "RuntimeError: planned failure for the traceback" in failure_lines[0]
    assert "RuntimeError: RuntimeError" not in log and "Traceback" not in log, log

    # A provider's 429 reschedules the task without counting a retry (postpone_rate_limited(), as a worker does).
    limited = s.insert("orphan-type", "local")
    s.sql.execute("UPDATE background_tasks SET status = 'processing' WHERE id = %s", (limited,))
    s.sql.execute("SELECT postpone_rate_limited(id, attempt, 'RateLimitError', 'HTTP 429', 600, 3600) "
                  "FROM background_tasks WHERE id = %s", (limited,))
    s.expect(limited, "rate_limited", "waiting for the model provider's budget", state="Rate limited · in ")

    # A provider budget with no room at psql (blocked for an hour): a model-calling task waits for it, and no
    # call reaches the model server.
    provider = model_server.base_url
    s.sql.execute("INSERT INTO provider_budgets (provider, model, requests_per_minute, blocked_until) "
                  "VALUES (%s, 'fake-model', 1, now() + interval '1 hour')", (provider,))
    budgeted = s.insert("generation", "local", payload={"amount": 1, "category": "Budgets"})
    s.expect(budgeted, "provider_budget", f"waiting for the provider's budget (provider_budgets {provider}, "
             "model fake-model): runs again in ", state="Waiting for the provider's budget · in ")
    assert model_server.requests == []
