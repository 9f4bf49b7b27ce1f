"""Database faults as a worker's actors see them: progress reports are best effort and never fail an actor; a
lease that cannot be renewed in time is fenced."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from bgtasks.broker import message_for
from bgtasks.errors import TaskCancelled
from bgtasks.settings import load_settings
from bgtasks.worker import Runtime
from tests.rows import one


def test_progress_survives_a_terminated_pooled_connection(database_url: str,
                                                          sql: psycopg.Connection[Any]) -> None:
    [task_id] = [r["id"] for r in sql.execute(
        "INSERT INTO background_tasks (task_type, user_id) VALUES ('sleep', 'tester') RETURNING id").fetchall()]
    runtime = Runtime(load_settings(database_url=database_url), concurrency=1)
    try:
        [row] = runtime.claimer.claim_if_due()
        ctx = runtime.in_flight.begin(task_id, row["attempt"])
        ctx.progress_sync(10, "warming up")
        sql.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ctx.progress_sync(50, "half way")  # the pooled connection is dead: retried, never raised
    finally:
        runtime.claimer.drop_connection()
        runtime.pool.close()
    assert sql.execute("SELECT progress, description FROM background_tasks WHERE id = %s",
                       (task_id,)).fetchone() == {"progress": 50, "description": "half way"}


def test_a_lease_that_cannot_be_renewed_in_time_is_fenced_and_handed_back(database_url: str,
                                                                         sql: psycopg.Connection[Any]) -> None:
    """The worker's own clock (moved by the test) passes the fence point of a lease no heartbeat renewed:
    the actor is stopped, nothing more is written for that attempt (progress, lease, completion), and once the
    actor has stopped the task goes back to pending without counting a retry."""
    [task_id] = [r["id"] for r in sql.execute(
        "INSERT INTO background_tasks (task_type, user_id) VALUES ('sleep', 'tester') RETURNING id").fetchall()]
    settings = load_settings(database_url=database_url, bgtasks_lease_s=3, bgtasks_heartbeat_s=0.5)
    now = [1000.0]
    runtime = Runtime(settings, concurrency=1, clock=lambda: now[0])
    try:
        [row] = runtime.claimer.claim_if_due()
        ctx = runtime.in_flight.records[task_id].context
        assert ctx is not None
        now[0] += 3 - runtime.leases.fence_margin_s - 0.01
        assert runtime.leases.fence_overdue() == []  # the lease still has more than the margin left
        now[0] += 0.02
        assert runtime.leases.fence_overdue() == [task_id]
        assert ctx.cancelled.is_set()
        with pytest.raises(TaskCancelled):
            ctx.progress_sync(50, "after the fence")
        lease = one(sql, "SELECT lease_expires_at FROM background_tasks WHERE id = %s", (task_id,))
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            runtime.leases.beat(conn)  # the actor has not stopped yet: nothing handed back, the lease not extended
        assert sql.execute("SELECT status::text, lease_expires_at, progress FROM background_tasks "
                           "WHERE id = %s", (task_id,)).fetchone() == {
            "status": "processing", "lease_expires_at": lease["lease_expires_at"], "progress": 0}
        runtime.outcomes.finish_ok(message_for(row))  # the actor ended (as if it had finished): no completion
        assert runtime.completer.empty()
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            runtime.leases.beat(conn)
    finally:
        runtime.claimer.drop_connection()
        runtime.pool.close()
    assert sql.execute("SELECT status::text, retry_count, worker_id FROM background_tasks WHERE id = %s",
                       (task_id,)).fetchone() == {"status": "pending", "retry_count": 0, "worker_id": None}
    assert one(sql, "SELECT count(*) AS n FROM task_attempt_errors")["n"] == 0


def test_tasks_of_a_claim_whose_answer_was_lost_go_back_without_a_retry(database_url: str,
                                                                        sql: psycopg.Connection[Any]) -> None:
    """A claim that committed while its connection died (a restart between commit and answer) took tasks the
    worker never heard of: its next claim round hands them back first, so no lease runs out on them."""
    ids = [r["id"] for r in sql.execute(
        "INSERT INTO background_tasks (task_type, user_id, priority) VALUES ('sleep', 'tester', 1), "
        "('sleep', 'tester', 0) RETURNING id").fetchall()]
    runtime = Runtime(load_settings(database_url=database_url), concurrency=1)
    try:
        [known] = runtime.claimer.claim_if_due()  # answered: the worker holds it
        assert known["id"] == ids[0]
        # The next claim commits but its answer never arrives (done here on another connection).
        sql.execute("SELECT id FROM complete_and_claim(NULL, NULL, NULL, %s, 1, 30)", (runtime.worker_id,))
        runtime.claimer.claim_answer_lost = True
        runtime.wake.set()
        with runtime.in_flight.lock:
            runtime.in_flight.records.clear()  # its one thread is free again (the first task finished elsewhere)
        sql.execute("UPDATE background_tasks SET status = 'completed' WHERE id = %s", (ids[0],))
        [again] = runtime.claimer.claim_if_due()
    finally:
        runtime.claimer.drop_connection()
        runtime.pool.close()
    assert again["id"] == ids[1]
    assert sql.execute("SELECT status::text, attempt, retry_count FROM background_tasks WHERE id = %s",
                       (ids[1],)).fetchone() == {"status": "processing", "attempt": 2, "retry_count": 0}
    assert one(sql, "SELECT count(*) AS n FROM task_attempt_errors")["n"] == 0
