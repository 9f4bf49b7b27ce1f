"""Workflows against real Postgres and real worker processes: dependencies (diamond order, failure
cancelling downstream, chains passing results, cycle refusal), per-user and per-type running limits, the
creation rate limit, cron schedules with several workers, analytics."""

from __future__ import annotations

import collections
import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from bgtasks import db
from bgtasks.errors import NotFound, RateLimited, ValidationFailed
from bgtasks.store import workflows
from bgtasks.store.tasks import TaskSpec
from tests.processes import Processes, peak_concurrency, wait_until
from tests.rows import one


def insert(sql: psycopg.Connection[Any], task_type: str, n: int = 1, payload: dict[str, Any] | None = None,
           user_id: str = "tester", **cols: Any) -> list[str]:
    names = ["task_type", "user_id", "payload", *cols]
    values = [task_type, user_id, json.dumps(payload or {}), *cols.values()]
    placeholders = ", ".join(["%s"] * len(values))
    rows = sql.execute(
        f"INSERT INTO background_tasks ({', '.join(names)}) SELECT {placeholders} FROM generate_series(1, %s) "
        "RETURNING id", [*values, n]).fetchall()
    return [r["id"] for r in rows]


def depend(sql: psycopg.Connection[Any], task_id: str, *upstream: str) -> dict[str, Any]:
    row: dict[str, Any] = one(sql, "SELECT * FROM add_task_dependencies(%s, %s)", (task_id, list(upstream)))
    return row


def status_of(sql: psycopg.Connection[Any], *ids: str) -> dict[str, str]:
    return {r["id"]: r["status"] for r in sql.execute(
        "SELECT id, status::text FROM background_tasks WHERE id = ANY(%s)", (list(ids),)).fetchall()}


def row(sql: psycopg.Connection[Any], task_id: str) -> dict[str, Any]:
    r: dict[str, Any] = one(sql, "SELECT * FROM background_tasks WHERE id = %s", (task_id,))
    return r


def unfinished(sql: psycopg.Connection[Any]) -> int:
    return int(one(sql, "SELECT count(*) AS n FROM background_tasks WHERE status IN ('pending', 'processing')"
                           )["n"])


# ---------------------------------------------------------------- dependencies

def test_diamond_runs_in_dependency_order_and_passes_results(sql: psycopg.Connection[Any],
                                                             procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET is_active = false")
    [a] = insert(sql, "add", payload={"start": 1, "add": 0})
    [b] = insert(sql, "add", payload={"add": 10})
    [c] = insert(sql, "add", payload={"add": 100})
    [d] = insert(sql, "add", payload={"add": 1000})
    assert depend(sql, b, a)["waiting_for"] == 1
    depend(sql, c, a)
    assert depend(sql, d, b, c)["waiting_for"] == 2
    sql.execute("UPDATE task_queue_settings SET is_active = true")
    for _ in range(4):
        procs.worker(concurrency=4)
    wait_until(lambda: set(status_of(sql, a, b, c, d).values()) == {"completed"}, 30, "the diamond to complete")
    lines = procs.journal_lines()
    start = {ln["task"]: ln["t"] for ln in lines if ln["event"] == "start"}
    end = {ln["task"]: ln["t"] for ln in lines if ln["event"] == "end"}
    assert end[a] <= start[b] and end[a] <= start[c]
    assert max(end[b], end[c]) <= start[d]
    assert collections.Counter(ln["task"] for ln in lines if ln["event"] == "start") == {a: 1, b: 1, c: 1, d: 1}
    assert row(sql, b)["result_data"] == {"value": 11}
    assert row(sql, c)["result_data"] == {"value": 101}
    assert row(sql, d)["result_data"] == {"value": 11 + 101 + 1000}


def test_chain_passes_each_result_to_the_next(sql: psycopg.Connection[Any], procs: Processes) -> None:
    [a] = insert(sql, "add", payload={"start": 5, "add": 1}, run_at="2100-01-01")  # not claimable yet
    [b] = insert(sql, "add", payload={"add": 2})
    [c] = insert(sql, "add", payload={"add": 3})
    depend(sql, b, a)
    depend(sql, c, b)
    procs.worker(concurrency=2)
    sql.execute("UPDATE background_tasks SET run_at = now() WHERE id = %s", (a,))
    wait_until(lambda: row(sql, c)["status"] == "completed", 30, "the chain to complete")
    assert [row(sql, t)["result_data"]["value"] for t in (a, b, c)] == [6, 8, 11]


def test_failure_upstream_cancels_everything_downstream_with_the_reason(sql: psycopg.Connection[Any]) -> None:
    [a, b, c, d, e] = [insert(sql, "noop")[0] for _ in range(5)]
    sql.execute("UPDATE background_tasks SET run_at = '2100-01-01'")  # no worker here; keep them pending
    depend(sql, b, a)
    depend(sql, c, a)
    depend(sql, d, b, c)
    depend(sql, e, d)
    sql.execute("UPDATE background_tasks SET status = 'error', error_message = 'boom' WHERE id = %s", (a,))
    assert status_of(sql, b, c, d, e) == {b: "cancelled", c: "cancelled", d: "cancelled", e: "cancelled"}
    assert row(sql, b)["cancel_reason"] == f"dependency {a} ended in error"
    assert row(sql, d)["cancel_reason"] in (
        f"dependency {b} was cancelled: upstream task {a} ended in error",
        f"dependency {c} was cancelled: upstream task {a} ended in error")
    assert row(sql, e)["cancel_reason"] == f"dependency {d} was cancelled: upstream task {a} ended in error"
    events = one(sql, "SELECT sum(n) AS n FROM task_counts WHERE status = 'cancelled'")["n"]
    assert events == 4


def test_failed_attempt_that_will_be_retried_does_not_cancel_dependents(sql: psycopg.Connection[Any],
                                                                        procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET retry_base_delay_ms = 50")
    [a] = insert(sql, "flaky", payload={"failures": 1}, run_at="2100-01-01")
    [b] = insert(sql, "add", payload={"start": 7})
    depend(sql, b, a)
    procs.worker(concurrency=2)
    sql.execute("UPDATE background_tasks SET run_at = now() WHERE id = %s", (a,))
    wait_until(lambda: status_of(sql, a, b) == {a: "completed", b: "completed"}, 30, "both to complete")


def test_permanent_failure_of_a_worker_run_cancels_dependents(sql: psycopg.Connection[Any],
                                                             procs: Processes) -> None:
    [a] = insert(sql, "flaky", payload={"failures": 1, "permanent": True}, run_at="2100-01-01")
    [b] = insert(sql, "noop")
    [c] = insert(sql, "noop")
    depend(sql, b, a)
    depend(sql, c, b)
    procs.worker(concurrency=2)
    sql.execute("UPDATE background_tasks SET run_at = now() WHERE id = %s", (a,))
    wait_until(lambda: status_of(sql, a, b, c) == {a: "error", b: "cancelled", c: "cancelled"}, 30,
               "the failure to cancel the chain")
    assert not any(ln["task"] in (b, c) for ln in procs.journal_lines())


def test_dependencies_already_finished_count_at_once(sql: psycopg.Connection[Any]) -> None:
    [done, failed, pending] = [insert(sql, "noop", run_at="2100-01-01")[0] for _ in range(3)]
    sql.execute("UPDATE background_tasks SET status = 'completed' WHERE id = %s", (done,))
    [x] = insert(sql, "noop", run_at="2100-01-01")
    assert depend(sql, x, done)["waiting_for"] == 0
    assert depend(sql, x, pending)["waiting_for"] == 1
    sql.execute("UPDATE background_tasks SET status = 'cancelled' WHERE id = %s", (failed,))
    [y] = insert(sql, "noop", run_at="2100-01-01")
    got = depend(sql, y, pending, failed)
    assert got["status"] == "cancelled" and got["cancel_reason"] == f"dependency {failed} ended in cancelled"


def test_cycles_unknown_ids_and_other_users_tasks_are_refused(sql: psycopg.Connection[Any]) -> None:
    [a, b, c] = [insert(sql, "noop", run_at="2100-01-01")[0] for _ in range(3)]
    [theirs] = insert(sql, "noop", user_id="someone-else", run_at="2100-01-01")
    depend(sql, b, a)
    depend(sql, c, b)
    with pytest.raises(psycopg.Error) as err:
        depend(sql, a, c)
    assert err.value.sqlstate == "BG422" and "cycle" in str(err.value)
    with pytest.raises(psycopg.Error) as err:
        depend(sql, a, a)
    assert err.value.sqlstate == "BG422"
    with pytest.raises(psycopg.Error) as err:
        depend(sql, a, "task_nope", theirs)
    assert err.value.sqlstate == "BG404" and "task_nope" in str(err.value) and theirs in str(err.value)
    assert row(sql, a)["waiting_for"] == 0
    assert one(sql, "SELECT count(*) AS n FROM task_dependencies")["n"] == 2


def test_deleting_an_unfinished_upstream_task_cancels_its_dependents(sql: psycopg.Connection[Any]) -> None:
    [a, b] = [insert(sql, "noop", run_at="2100-01-01")[0] for _ in range(2)]
    depend(sql, b, a)
    sql.execute("DELETE FROM background_tasks WHERE id = %s", (a,))
    assert row(sql, b)["status"] == "cancelled"
    assert row(sql, b)["cancel_reason"] == f"dependency {a} was deleted"


async def test_create_with_dependencies_from_the_store(pool: Any, sql: psycopg.Connection[Any]) -> None:
    [a] = insert(sql, "noop", run_at="2100-01-01")
    [b] = await workflows.create_tasks_checked(pool, [TaskSpec("noop", "tester")], [[a]])
    assert b["waiting_for"] == 1
    with pytest.raises(NotFound):
        await workflows.create_tasks_checked(pool, [TaskSpec("noop", "tester")], [["task_missing"]])
    with pytest.raises(ValidationFailed):
        await workflows.add_task_dependencies(pool, a, [b["id"]])
    assert one(sql, "SELECT count(*) AS n FROM background_tasks")["n"] == 2, "refused: rolled back"


# ---------------------------------------------------------------- limits

def per_user_peaks(sql: psycopg.Connection[Any], lines: list[dict[str, Any]]) -> dict[str, int]:
    owner = {r["id"]: r["user_id"] for r in sql.execute("SELECT id, user_id FROM background_tasks").fetchall()}
    by_user: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for ln in lines:
        by_user[owner[ln["task"]]].append(ln)
    return {u: peak_concurrency(ls) for u, ls in by_user.items()}


def test_per_user_running_limit_is_never_exceeded_by_four_racing_workers(sql: psycopg.Connection[Any],
                                                                          procs: Processes) -> None:
    sql.execute("UPDATE user_limits SET max_running = 2 WHERE user_id = '*'")
    sql.execute("INSERT INTO user_limits (user_id, max_running) VALUES ('vip', 4)")
    sql.execute("UPDATE task_queue_settings SET is_active = false")
    for user in ("ann", "bob", "cy", "vip"):
        insert(sql, "sleep", 12, {"seconds": 0.3, "steps": 1}, user_id=user)
    # All 16 threads ready before the first claim: claims take turns by owner, so with fewer threads up
    # every user would sit below their limit and the test would show nothing.
    for _ in range(4):
        procs.worker(concurrency=4)
    sql.execute("UPDATE task_queue_settings SET is_active = true")
    wait_until(lambda: unfinished(sql) == 0, 90, "48 tasks to finish")
    peaks = per_user_peaks(sql, procs.journal_lines())
    assert peaks == {"ann": 2, "bob": 2, "cy": 2, "vip": 4}, peaks


def test_per_type_cap_holds_across_workers_and_other_types_still_run(sql: psycopg.Connection[Any],
                                                                     procs: Processes) -> None:
    sql.execute("INSERT INTO task_type_limits (task_type, max_running) VALUES ('sleep', 3)")
    sleeps = insert(sql, "sleep", 15, {"seconds": 0.3, "steps": 1}, priority=5)
    noops = insert(sql, "noop", 20)
    for _ in range(4):
        procs.worker(concurrency=4)
    wait_until(lambda: unfinished(sql) == 0, 90, "every task to finish")
    lines = procs.journal_lines()
    assert peak_concurrency([ln for ln in lines if ln["task"] in set(sleeps)]) == 3
    first_sleep_end = min(ln["t"] for ln in lines if ln["task"] in set(sleeps) and ln["event"] == "end")
    noop_starts = [ln["t"] for ln in lines if ln["task"] in set(noops) and ln["event"] == "start"]
    assert min(noop_starts) < first_sleep_end, "capped sleeps must not hold back other types"


# ---------------------------------------------------------------- creation rate

async def test_creation_rate_limit_answers_with_retry_after(pool: Any, sql: psycopg.Connection[Any]) -> None:
    sql.execute("UPDATE user_limits SET max_created_per_minute = 5 WHERE user_id = '*'")
    sql.execute("INSERT INTO user_limits (user_id, max_created_per_minute, max_running) "
                "VALUES ('free', 1000, NULL), ('runner', NULL, 3)")
    specs = [TaskSpec("noop", "ann", run_at=None) for _ in range(3)]
    await workflows.create_tasks_checked(pool, specs)
    # The window is counted per second in task_creation_counts (kept by the insert trigger): age those.
    sql.execute("UPDATE task_creation_counts SET second = second - interval '50 seconds'")  # 10 s left in window
    await workflows.create_tasks_checked(pool, specs[:2])
    with pytest.raises(RateLimited) as err:
        await workflows.create_tasks_checked(pool, specs[:1])
    assert 9 <= err.value.retry_after <= 11, err.value.retry_after
    assert "rate limit" in str(err.value)
    # Three of the five age out after ~10 s, so asking for three more waits as long; four would wait ~60 s.
    with pytest.raises(RateLimited) as err:
        await workflows.create_tasks_checked(pool, specs[:3])
    assert 9 <= err.value.retry_after <= 11
    with pytest.raises(RateLimited) as err:
        await workflows.create_tasks_checked(pool, [TaskSpec("noop", "ann")] * 4)
    assert 58 <= err.value.retry_after <= 60
    assert one(sql, "SELECT count(*) AS n FROM background_tasks")["n"] == 5
    sql.execute("UPDATE task_creation_counts SET second = second - interval '11 seconds' "
                "WHERE second < now() - interval '30 seconds'")
    await workflows.create_tasks_checked(pool, specs[:3])  # three aged out: room for three
    # A user's own row overrides the default column by column: 'free' may create more, 'runner' (a row
    # that sets only another limit) keeps the default rate.
    await workflows.create_tasks_checked(pool, [TaskSpec("noop", "free") for _ in range(20)])
    with pytest.raises(RateLimited):
        await workflows.create_tasks_checked(pool, [TaskSpec("noop", "runner") for _ in range(6)])


async def test_concurrent_creators_cannot_overshoot_the_rate(pool: Any, sql: psycopg.Connection[Any]) -> None:
    import asyncio

    sql.execute("INSERT INTO user_limits (user_id, max_created_per_minute) VALUES ('ann', 7)")

    async def create_one() -> bool:
        try:
            await workflows.create_tasks_checked(pool, [TaskSpec("noop", "ann")])
            return True
        except RateLimited:
            return False

    results = await asyncio.gather(*(create_one() for _ in range(20)))
    assert sum(results) == 7
    assert one(sql, "SELECT count(*) AS n FROM background_tasks")["n"] == 7


# ---------------------------------------------------------------- schedules

def test_four_racing_schedulers_create_one_task_per_due_time_without_gaps(sql: psycopg.Connection[Any],
                                                                           database_url: str) -> None:
    from bgtasks import scheduler

    sql.execute("INSERT INTO task_schedules (name, task_type, user_id, cron, payload) "
                "VALUES ('tick', 'noop', 'ops', '* * * * * *', '{\"from\": \"cron\"}')")
    # Thirty seconds of schedule on an injected clock: at each virtual moment four workers tick at once.
    start = one(sql, "SELECT date_trunc('second', now()) AS t")["t"]
    conns = [db.sync_connect(database_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            for second in range(30):
                now = start + timedelta(seconds=second, milliseconds=300)
                ready = threading.Barrier(4)

                def tick(conn: psycopg.Connection[Any], now: datetime = now,
                         ready: threading.Barrier = ready) -> int:
                    ready.wait(10)
                    return scheduler.run_due_schedules(conn, now=now)

                made = list(pool.map(tick, conns))
                assert sum(made) == (0 if second == 0 else 1), (second, made)
    finally:
        for conn in conns:
            conn.close()
    rows = sql.execute("SELECT scheduled_for, schedule_name, payload, user_id FROM background_tasks "
                       "ORDER BY scheduled_for").fetchall()
    assert [r["scheduled_for"] for r in rows] == [start + timedelta(seconds=s) for s in range(1, 30)]
    assert rows[0]["payload"] == {"from": "cron"} and rows[0]["user_id"] == "ops"


def test_workers_run_each_scheduled_task_once(sql: psycopg.Connection[Any], procs: Processes) -> None:
    # The same on the database's own clock, through worker processes: only a few seconds of it.
    for _ in range(2):
        procs.worker(concurrency=2)
    sql.execute("INSERT INTO task_schedules (name, task_type, user_id, cron) "
                "VALUES ('tick', 'noop', 'ops', '* * * * * *')")
    wait_until(lambda: one(sql, "SELECT count(*) AS n FROM background_tasks WHERE status = 'completed'"
                                   )["n"] >= 3, 30, "three scheduled tasks to run")
    # The UPDATE waits for a tick holding the row, so no task for this schedule is created after it.
    sql.execute("UPDATE task_schedules SET enabled = false WHERE name = 'tick'")
    wait_until(lambda: unfinished(sql) == 0, 20, "the scheduled tasks to run")
    due = [r["scheduled_for"] for r in sql.execute(
        "SELECT scheduled_for FROM background_tasks ORDER BY scheduled_for").fetchall()]
    assert len(set(due)) == len(due), "two tasks for one due time"
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(due)), "a gap"
    starts = collections.Counter(ln["task"] for ln in procs.journal_lines() if ln["event"] == "start")
    assert len(starts) == len(due) and max(starts.values()) == 1


def test_bad_cron_written_at_psql_disables_the_schedule_with_the_reason(sql: psycopg.Connection[Any]) -> None:
    from bgtasks import scheduler

    sql.execute("INSERT INTO task_schedules (name, task_type, user_id, cron) VALUES ('bad', 'noop', 'u', 'x y')")
    scheduler.run_due_schedules(sql)
    got = one(sql, "SELECT enabled, last_error FROM task_schedules")
    assert got["enabled"] is False and "cron" in got["last_error"]


def test_catch_up_once_after_downtime_creates_a_single_task(sql: psycopg.Connection[Any]) -> None:
    from bgtasks import scheduler

    sql.execute("INSERT INTO task_schedules (name, task_type, user_id, cron, catch_up) "
                "VALUES ('m', 'noop', 'u', '*/5 * * * * *', 'once'), ('s', 'noop', 'u', '*/5 * * * * *', 'skip')")
    scheduler.run_due_schedules(sql)  # sets next_run_at
    # As if every worker had been down for an hour:
    sql.execute("UPDATE task_schedules SET next_run_at = date_trunc('minute', now()) - interval '1 hour'")
    scheduler.run_due_schedules(sql, grace_s=1)
    made = {r["schedule_name"]: r["n"] for r in sql.execute(
        "SELECT schedule_name, count(*) AS n FROM background_tasks GROUP BY 1").fetchall()}
    assert made.get("m") == 1 and made.get("s", 0) <= 1
    nxt = one(sql, "SELECT bool_and(next_run_at > now()) AS ok FROM task_schedules")
    assert nxt["ok"]


# ---------------------------------------------------------------- analytics

def test_analytics_per_type_and_user(sql: psycopg.Connection[Any]) -> None:
    ok = insert(sql, "noop", 3, user_id="ann")
    bad = insert(sql, "flaky", 1, user_id="bob")
    sql.execute("UPDATE background_tasks SET status = 'processing', started_at = created_at + interval '2 s'")
    sql.execute("UPDATE background_tasks SET status = 'completed', completed_at = started_at + interval '4 s' "
                "WHERE id = ANY(%s)", (ok,))
    sql.execute("UPDATE background_tasks SET status = 'error', retry_count = 2 WHERE id = ANY(%s)", (bad,))
    sql.execute("INSERT INTO task_model_calls (task_id, user_id, task_type, attempt, model, prompt_tokens, "
                "completion_tokens, total_tokens, duration_ms) VALUES (%s, 'ann', 'noop', 1, 'm', 10, 5, 15, 9)",
                (ok[0],))
    by_type = {r["key"]: r for r in sql.execute("SELECT * FROM task_analytics_by_type").fetchall()}
    assert by_type["noop"]["completed"] == 3 and by_type["noop"]["success_rate"] == 1.0
    assert by_type["noop"]["duration_p50_s"] == pytest.approx(4.0)
    assert by_type["noop"]["queue_wait_p95_s"] == pytest.approx(2.0)
    assert by_type["noop"]["prompt_tokens"] == 10
    assert by_type["flaky"]["failed"] == 1 and by_type["flaky"]["success_rate"] == 0.0
    assert by_type["flaky"]["retries"] == 2
    mine = sql.execute("SELECT * FROM task_analytics(now() - interval '1 hour', now() + interval '1 s', "
                       "'user', 'bob')").fetchall()
    assert [r["key"] for r in mine] == ["bob"]


# ---------------------------------------------------------------- over HTTP

def test_api_schedules_dependencies_rate_limit_and_analytics(sql: psycopg.Connection[Any],
                                                             procs: Processes) -> None:
    import httpx

    _, base = procs.api()
    with httpx.Client(base_url=base, timeout=10) as http:
        made = http.post("/api/schedules", json={"name": "nightly", "taskType": "noop", "cron": "0 3 * * *",
                                                 "timezone": "Europe/Madrid", "catchUp": "once"})
        assert made.status_code == 201, made.text
        assert made.json()["schedule"]["catchUp"] == "once"
        bad = http.post("/api/schedules", json={"name": "x", "taskType": "noop", "cron": "61 * * * *"})
        assert bad.status_code == 422 and bad.json()["field"] == "cron"
        assert http.patch("/api/schedules/nightly", json={"enabled": False}).json()["schedule"]["enabled"] is False
        assert [s["name"] for s in http.get("/api/schedules").json()["schedules"]] == ["nightly"]
        assert http.delete("/api/schedules/nightly").status_code == 200
        assert http.get("/api/schedules/nightly").status_code == 404

        first = http.post("/api/tasks", json={"taskType": "noop", "runAt": "2100-01-01T00:00:00Z"}).json()["task"]
        second = http.post("/api/tasks", json={"taskType": "noop", "dependsOn": [first["id"]]})
        assert second.status_code == 201, second.text
        assert row(sql, second.json()["task"]["id"])["waiting_for"] == 1
        assert http.post("/api/tasks", json={"taskType": "noop", "dependsOn": ["task_nope"]}).status_code == 404

        sql.execute("UPDATE user_limits SET max_created_per_minute = 2 WHERE user_id = '*'")  # two created so far
        over = http.post("/api/tasks", json={"taskType": "noop"})
        assert over.status_code == 429, over.text
        assert 55 <= int(over.headers["Retry-After"]) <= 60

        stats = http.get("/api/analytics", params={"groupBy": "user"})
        assert stats.status_code == 200, stats.text
        assert stats.json()["groups"][0]["total"] == 2
