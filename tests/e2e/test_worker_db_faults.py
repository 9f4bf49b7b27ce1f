"""A worker process whose database connections are terminated while its actors run (pg_terminate_backend,
as a failover or an operator does): no actor fails and no attempt is spent. And the expected ways an actor
is stopped (a cancel, a lease taken back) log one line each, no ERROR and no traceback."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import psycopg
import pytest

from tests.processes import Processes, wait_until
from tests.rows import one

pytestmark = pytest.mark.slow

# The worker's connections, by the application_name each carries ("bgtasks worker <worker id>").
TERMINATE = ("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
             "WHERE datname = current_database() AND application_name LIKE 'bgtasks worker %'")


def create(sql: psycopg.Connection[Any], n: int, payload: dict[str, Any], max_retries: int = 0) -> list[str]:
    rows = sql.execute(
        "INSERT INTO background_tasks (task_type, user_id, payload, max_retries) "
        "SELECT 'sleep', 'tester', %s, %s FROM generate_series(1, %s) RETURNING id",
        (json.dumps(payload), max_retries, n)).fetchall()
    return [r["id"] for r in rows]


def test_terminated_connections_fail_no_actor_and_spend_no_attempt(sql: psycopg.Connection[Any],
                                                                   procs: Processes) -> None:
    worker = procs.worker(concurrency=4)
    ids = create(sql, 16, {"seconds": 1.0, "steps": 10})  # a progress write every 0.1 s; maxRetries 0
    wait_until(lambda: len(procs.journal_lines()) >= 4, 30, "the first actors to start")
    terminated = 0
    for _ in range(6):  # every connection the worker has, six times over while its actors run
        terminated += one(sql, TERMINATE)["n"]
        time.sleep(0.3)
    assert terminated >= 6

    def finished() -> bool:
        return one(sql, "SELECT count(*) AS n FROM background_tasks WHERE status IN ('pending', 'processing')"
                           )["n"] == 0

    wait_until(finished, 90, "every task to finish")
    # A claim whose reply a terminated connection lost was committed: those rows are taken back without a
    # retry and claimed again, so `attempt` (the claim counter) may be 2; no retry is spent and no actor runs
    # twice (the journal below).
    rows = sql.execute("SELECT status::text, retry_count, count(*) AS n FROM background_tasks "
                       "GROUP BY 1, 2").fetchall()
    assert rows == [{"status": "completed", "retry_count": 0, "n": len(ids)}], rows
    assert one(sql, "SELECT count(*) AS n FROM task_attempt_errors")["n"] == 0
    starts = [ln["task"] for ln in procs.journal_lines() if ln["event"] == "start"]
    assert sorted(starts) == sorted(ids)  # each actor ran once, none was interrupted and rerun
    worker.stop()
    out = worker.output()
    assert not re.search(r"Traceback| ERROR ", out), out[-4000:]


def test_a_cancelled_and_a_fenced_attempt_log_one_line_each(sql: psycopg.Connection[Any],
                                                            procs: Processes) -> None:
    worker = procs.worker(concurrency=2)
    cancelled, fenced = create(sql, 2, {"seconds": 60, "steps": 600}, max_retries=3)
    wait_until(lambda: {ln["task"] for ln in procs.journal_lines() if ln["event"] == "start"} == {cancelled, fenced},
               30, "both actors to start")
    sql.execute("SELECT cancel_task(%s, 'no longer wanted')", (cancelled,))
    # The fenced one: its lease is taken back (as the reaper does when a worker stops heartbeating); the
    # queue is stopped so that nobody claims it again meanwhile.
    sql.execute("UPDATE task_queue_settings SET is_active = false")
    sql.execute("UPDATE background_tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
                (fenced,))
    sql.execute("SELECT reap_expired_leases(100, 0)")  # no outage grace: take it back now
    wait_until(lambda: {ln["task"] for ln in procs.journal_lines() if ln["event"] == "end"} == {cancelled, fenced},
               30, "both actors to stop")
    worker.stop()
    out = worker.output()
    assert not re.search(r"Traceback| ERROR |WARNING", out), out[-4000:]
    for tid in (cancelled, fenced):
        lines = [ln for ln in out.splitlines() if tid in ln]
        assert len(lines) == 1 and " INFO " in lines[0], (tid, lines)
