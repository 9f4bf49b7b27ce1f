"""Issue 18's provider budgets, from outside: two `bgtasks worker` processes at concurrency 8 against a model
server that allows 30 requests per window (a short window stands for the provider's minute). With a budget of
30 per window the server answers no 429 and no task spends a retry; without it, the same run meets 429s. A
budget change at psql reaches the running workers (tasks told to wait a minute run long before it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bgtasks import db
from tests.fakes.openai_server import FakeOpenAI
from tests.processes import Processes, wait_until
from tests.rows import one

pytestmark = pytest.mark.slow

WINDOW_S = 3.0  # the "minute" of both the server and the budget: 60 tasks need at least two
LIMIT = 30
TASKS = 60


@pytest.fixture
def model_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def insert_tasks(sql: psycopg.Connection[dict[str, Any]], n: int, label: str) -> list[str]:
    rows = sql.execute(
        "INSERT INTO background_tasks (task_type, user_id, payload, label) "
        "SELECT 'generation', 'budgeted', %s::jsonb, %s FROM generate_series(1, %s) RETURNING id",
        (json.dumps({"amount": 1, "category": "Budgets"}), label, n)).fetchall()
    return [r["id"] for r in rows]


def finished(sql: psycopg.Connection[dict[str, Any]], label: str) -> dict[str, Any]:
    return one(sql, """SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
                              count(*) FILTER (WHERE status NOT IN ('completed', 'pending', 'processing')) AS other,
                              coalesce(max(retry_count), 0) AS most_retries
                       FROM background_tasks WHERE label = %s""", (label,))


def outcomes(sql: psycopg.Connection[dict[str, Any]], label: str) -> dict[str, int]:
    rows = sql.execute("""SELECT e.outcome, count(*) AS n FROM task_attempt_errors e
                          JOIN background_tasks t ON t.id = e.task_id WHERE t.label = %s GROUP BY 1""",
                       (label,)).fetchall()
    return {r["outcome"]: r["n"] for r in rows}


def test_a_fleet_budget_keeps_two_workers_under_the_providers_limit(
        procs: Processes, database_url: str, model_server: FakeOpenAI) -> None:
    fake = model_server
    provider = fake.base_url
    env = {"OPENAI_BASE_URL": provider, "OPENAI_API_KEY": "test-key", "BGTASKS_MODEL": "fake-model",
           "BGTASKS_MODEL_TIMEOUT_S": "10"}
    with db.sync_connect(database_url) as sql:
        sql.execute("INSERT INTO provider_budgets (provider, requests_per_minute, window_seconds) VALUES (%s, %s, %s)",
                    (provider, LIMIT, WINDOW_S))
        procs.worker(concurrency=8, **env)
        procs.worker(concurrency=8, **env)
        fake.limit_requests(LIMIT, WINDOW_S)

        insert_tasks(sql, TASKS, "with-budget")
        wait_until(lambda: finished(sql, "with-budget")["completed"] == TASKS, 120,
                   f"the {TASKS} budgeted tasks to complete")
        with_budget = finished(sql, "with-budget")
        assert fake.over_limit == 0, f"the server answered {fake.over_limit} requests with 429 under the budget"
        assert with_budget == {"completed": TASKS, "other": 0, "most_retries": 0}
        seen = outcomes(sql, "with-budget")
        assert set(seen) <= {"budget_wait"} and seen.get("budget_wait", 0) > 0, seen
        assert len(fake.requests) == TASKS  # every call made once: the waits happened before any call
        usage = one(sql, "SELECT waits, rate_limited FROM provider_budget_usage")
        assert usage["waits"] > 0 and usage["rate_limited"] == 0

        # The same run without the budget: sixteen threads outrun 30 requests per window.
        sql.execute("DELETE FROM provider_budgets")
        fake.limit_requests(LIMIT, WINDOW_S)
        insert_tasks(sql, TASKS, "without-budget")
        wait_until(lambda: fake.over_limit > 0, 120, "the server to answer 429 without the budget")
        wait_until(lambda: outcomes(sql, "without-budget").get("rate_limited", 0) > 0, 60,
                   "a 429 recorded as rate_limited")
        wait_until(lambda: finished(sql, "without-budget")["completed"] == TASKS, 180,
                   "the unbudgeted tasks to complete after their 429s")


def test_a_budget_change_at_psql_reaches_running_workers(
        procs: Processes, database_url: str, model_server: FakeOpenAI) -> None:
    fake = model_server
    provider = fake.base_url
    env = {"OPENAI_BASE_URL": provider, "OPENAI_API_KEY": "test-key", "BGTASKS_MODEL": "fake-model"}
    with db.sync_connect(database_url) as sql:
        # One request a minute: the first task runs, the others are told to wait about a minute each.
        sql.execute("INSERT INTO provider_budgets (provider, model, requests_per_minute) "
                    "VALUES (%s, 'fake-model', 1)", (provider,))
        procs.worker(concurrency=4, **env)
        insert_tasks(sql, 4, "held")
        wait_until(lambda: one(sql, "SELECT count(*) AS n FROM pending_tasks_why WHERE reason = 'provider_budget'")
                   ["n"] == 3, 60, "three tasks waiting for the provider's budget")
        why = one(sql, "SELECT why, run_at > now() + interval '30 s' AS far FROM pending_tasks_why "
                       "WHERE reason = 'provider_budget' LIMIT 1")
        assert why["far"], why
        assert why["why"].startswith(f"waiting for the provider's budget (provider_budgets {provider}, "
                                     "model fake-model): runs again in"), why
        wait_until(lambda: finished(sql, "held")["completed"] == 1, 30, "the one task the budget let through")

        sql.execute("UPDATE provider_budgets SET requests_per_minute = 100 WHERE provider = %s", (provider,))
        # Their turns were a minute away; the change wakes them and the next reservations read the new number.
        wait_until(lambda: finished(sql, "held")["completed"] == 4, 20, "the held tasks to run after the change")
        assert finished(sql, "held")["most_retries"] == 0
        assert len(fake.requests) == 4

        # Lowered at psql: the running workers hold the next calls again.
        sql.execute("UPDATE provider_budgets SET requests_per_minute = 4 WHERE provider = %s", (provider,))
        insert_tasks(sql, 2, "lowered")
        wait_until(lambda: one(sql, "SELECT count(*) AS n FROM pending_tasks_why WHERE reason = 'provider_budget'")
                   ["n"] == 2, 60, "the next tasks to wait under the lowered budget")
        assert len(fake.requests) == 4
