"""The queue engine against real Postgres with real worker processes: exactly-once, global limit, leases
after SIGKILL, retries with backoff, cancellation, pause/resume, delays, priorities, graceful shutdown."""

from __future__ import annotations

import collections
import json
import signal
import threading
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bgtasks.store import worker as store
from tests.processes import Processes, peak_concurrency, wait_until
from tests.rows import one


def insert(sql: psycopg.Connection[Any], task_type: str, n: int = 1, payload: dict[str, Any] | None = None,
           **cols: Any) -> list[str]:
    names = ["task_type", "user_id", "payload", *cols]
    values = [task_type, "tester", json.dumps(payload or {}), *cols.values()]
    placeholders = ", ".join(["%s"] * len(values))
    rows = sql.execute(
        f"INSERT INTO background_tasks ({', '.join(names)}) SELECT {placeholders} FROM generate_series(1, %s) "
        "RETURNING id", [*values, n]).fetchall()
    return [r["id"] for r in rows]


def statuses(sql: psycopg.Connection[Any]) -> dict[str, int]:
    return {r["status"]: r["n"] for r in sql.execute(
        "SELECT status::text, count(*) AS n FROM background_tasks GROUP BY 1").fetchall()}


def all_done(sql: psycopg.Connection[Any], n: int) -> bool:
    return statuses(sql).get("completed", 0) == n


def test_every_task_runs_exactly_once_with_four_workers(sql: psycopg.Connection[Any], procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET is_active = false")
    for _ in range(4):
        procs.worker(concurrency=4)
    ids = insert(sql, "sleep", 1000, {"seconds": 0.002, "steps": 1})
    sql.execute("UPDATE task_queue_settings SET is_active = true")
    wait_until(lambda: all_done(sql, 1000), 90, "1000 tasks completed")
    starts = collections.Counter(ln["task"] for ln in procs.journal_lines() if ln["event"] == "start")
    assert set(starts) == set(ids)
    assert max(starts.values()) == 1, [t for t, c in starts.items() if c > 1][:5]
    assert len({ln["pid"] for ln in procs.journal_lines()}) > 1, "the work was not shared between workers"
    assert one(sql, "SELECT sum(n) FROM task_counts WHERE status = 'completed'")["sum"] == 1000


def test_global_limit_is_never_exceeded_and_follows_psql_changes(sql: psycopg.Connection[Any],
                                                                  procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 3")
    insert(sql, "sleep", 24, {"seconds": 0.4, "steps": 2})
    for _ in range(4):
        procs.worker(concurrency=4)
    wait_until(lambda: all_done(sql, 24), 60, "24 sleeping tasks completed")
    first = procs.journal_lines()
    assert peak_concurrency(first) == 3

    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 6")
    insert(sql, "sleep", 36, {"seconds": 0.4, "steps": 2})
    wait_until(lambda: all_done(sql, 60), 60, "36 more tasks completed")
    second = procs.journal_lines()[len(first):]
    assert 3 < peak_concurrency(second) <= 6


def test_task_of_a_killed_worker_completes_elsewhere_after_its_lease(sql: psycopg.Connection[Any],
                                                                     procs: Processes) -> None:
    victim = procs.worker(concurrency=1, BGTASKS_LEASE_S="2")
    [task_id] = insert(sql, "sleep", 1, {"seconds": 1.5, "steps": 3})
    wait_until(lambda: any(ln["event"] == "start" for ln in procs.journal_lines()), 20, "the task to start")
    victim.kill()
    procs.worker(concurrency=1, BGTASKS_LEASE_S="2")
    wait_until(lambda: statuses(sql) == {"completed": 1}, 30, "the task completed on the second worker")
    row = sql.execute("SELECT retry_count, attempt FROM background_tasks WHERE id = %s", (task_id,)).fetchone()
    assert row == {"retry_count": 1, "attempt": 2}
    lost = sql.execute("SELECT error_type, outcome FROM task_attempt_errors WHERE task_id = %s",
                       (task_id,)).fetchall()
    assert lost == [{"error_type": "LeaseExpired", "outcome": "lease_expired"}]
    pids = [ln["pid"] for ln in procs.journal_lines() if ln["event"] == "start"]
    assert pids[0] == victim.pid and pids[1] != victim.pid


def test_retries_back_off_exponentially_and_permanent_errors_are_not_retried(
        sql: psycopg.Connection[Any], procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET retry_base_delay_ms = 400")
    [flaky] = insert(sql, "flaky", 1, {"failures": 3}, max_retries=5)
    [doomed] = insert(sql, "flaky", 1, {"failures": 3, "permanent": True, "message": "bad input: no"})
    [exhausted] = insert(sql, "flaky", 1, {"failures": 5}, max_retries=1)
    procs.worker(concurrency=2)
    wait_until(lambda: statuses(sql).get("pending", 0) + statuses(sql).get("processing", 0) == 0, 30,
               "every task finished")
    rows = {r["id"]: r for r in sql.execute("SELECT * FROM background_tasks").fetchall()}
    assert rows[flaky]["status"] == "completed" and rows[flaky]["retry_count"] == 3
    # The backoff the third failure scheduled (run_at and failed_at share that transaction's now()): base 0.4 s
    # times 2^2, jitter 0.5-1.0; and the last attempt did not start before it (fail_task's own backoff for
    # each retry: test_failed_attempts_are_scheduled_with_exponential_backoff).
    last = one(sql, "SELECT extract(epoch FROM t.run_at - e.failed_at)::float8 AS delay, "
                    "t.started_at >= t.run_at AS waited FROM background_tasks t "
                    "JOIN task_attempt_errors e ON e.task_id = t.id AND e.attempt = 3 WHERE t.id = %s", (flaky,))
    assert 0.4 * 4 * 0.5 <= last["delay"] <= 0.4 * 4 and last["waited"], last

    assert rows[doomed]["status"] == "error" and rows[doomed]["retry_count"] == 0
    assert rows[doomed]["error_message"] == "bad input: no"
    assert rows[exhausted]["status"] == "error" and rows[exhausted]["retry_count"] == 1
    history = sql.execute("SELECT attempt, error_type, outcome, worker_id FROM task_attempt_errors "
                          "WHERE task_id = %s ORDER BY attempt", (exhausted,)).fetchall()
    assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "retried"), (2, "failed")]
    assert all(h["worker_id"] and h["error_type"] == "RuntimeError" for h in history)


def test_failed_attempts_are_scheduled_with_exponential_backoff(sql: psycopg.Connection[Any]) -> None:
    """fail_task's run_at for retry n: base * 2^n, capped at retry_max_delay_ms, times a jitter of 0.5-1.0;
    read off the row (no clock waited on)."""
    sql.execute("UPDATE task_queue_settings SET retry_base_delay_ms = 400, retry_max_delay_ms = 2000")
    [task] = insert(sql, "flaky", 1, max_retries=10)
    delays = []
    for attempt in range(1, 6):
        sql.execute("UPDATE background_tasks SET status = 'processing', attempt = %s, started_at = now(), "
                    "worker_id = 'w' WHERE id = %s", (attempt, task))
        assert one(sql, "SELECT fail_task(%s, %s, 'RuntimeError', 'again')::text AS s",
                   (task, attempt))["s"] == "pending"
        delays.append(one(sql, "SELECT extract(epoch FROM t.run_at - e.failed_at)::float8 AS d "
                               "FROM background_tasks t JOIN task_attempt_errors e ON e.task_id = t.id "
                               "AND e.attempt = %s WHERE t.id = %s", (attempt, task))["d"])
    for n, delay in enumerate(delays):
        full = min(0.4 * 2**n, 2.0)
        assert full * 0.5 <= delay <= full, (n, delays)
    assert one(sql, "SELECT retry_count FROM background_tasks WHERE id = %s", (task,))["retry_count"] == 5


def test_cancelling_a_running_task_interrupts_its_actor_mid_step(sql: psycopg.Connection[Any],
                                                                  procs: Processes) -> None:
    procs.worker(concurrency=2)
    # Two steps of 30 s: an actor that ends before its first step did not finish it, it was interrupted.
    [task_id] = insert(sql, "sleep", 1, {"seconds": 60, "steps": 2})
    wait_until(lambda: statuses(sql) == {"processing": 1}, 20, "the task to be processing")
    wait_until(lambda: any(ln["event"] == "start" for ln in procs.journal_lines()), 10, "the actor to start")
    sql.execute("UPDATE background_tasks SET status = 'cancelled' WHERE id = %s", (task_id,))  # as at psql
    wait_until(lambda: any(ln["event"] == "end" for ln in procs.journal_lines()), 20, "the actor to stop")
    [end] = [ln for ln in procs.journal_lines() if ln["event"] == "end"]
    assert end["task"] == task_id and end.get("error"), f"the actor was not interrupted: {end}"
    row = one(sql, "SELECT status::text, completed_at, progress, result_data FROM background_tasks "
                      "WHERE id = %s", (task_id,))
    assert row["status"] == "cancelled" and row["completed_at"] is not None
    assert row["progress"] < 50 and row["result_data"] is None, row


def test_pause_resume_delay_and_priority(sql: psycopg.Connection[Any], procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET is_active = false, poll_interval = 100")
    procs.worker(concurrency=1)
    low = insert(sql, "noop", 3, priority=0)
    high = insert(sql, "noop", 3, priority=5)
    [delayed] = insert(sql, "noop", 1)
    sql.execute("UPDATE background_tasks SET run_at = now() + interval '2 seconds' WHERE id = %s", (delayed,))
    # Two polls after the tasks were in (each claim of the second began after the first was stamped): the
    # worker asked for tasks, and the paused queue gave it none.
    for _ in range(2):
        sql.execute("UPDATE task_queue_settings SET last_poll_at = NULL")
        wait_until(lambda: one(sql, "SELECT last_poll_at FROM task_queue_settings")["last_poll_at"], 20,
                   "the worker to poll the paused queue")
    assert statuses(sql) == {"pending": 7}, "a paused queue must not be claimed from"
    sql.execute("UPDATE task_queue_settings SET is_active = true")
    wait_until(lambda: statuses(sql).get("completed", 0) == 6, 10, "the six due tasks to run")
    order = [ln["task"] for ln in procs.journal_lines() if ln["event"] == "start"]
    assert set(order[:3]) == set(high)
    assert set(order[3:6]) == set(low)
    assert one(sql, "SELECT status::text FROM background_tasks WHERE id = %s",
                       (delayed,))["status"] == "pending"
    wait_until(lambda: statuses(sql).get("completed", 0) == 7, 10, "the delayed task to run")
    started = next(ln["t"] for ln in procs.journal_lines() if ln["task"] == delayed)
    run_at = one(sql, "SELECT extract(epoch FROM run_at) AS t FROM background_tasks WHERE id = %s",
                         (delayed,))["t"]
    assert started >= float(run_at) - 0.01, "the delayed task ran before it was due"


def test_sigterm_hands_unfinished_tasks_back_without_counting_an_attempt(sql: psycopg.Connection[Any],
                                                                        procs: Processes) -> None:
    worker = procs.worker(concurrency=2, BGTASKS_SHUTDOWN_GRACE_S="0.5")
    ids = insert(sql, "sleep", 2, {"seconds": 30, "steps": 3})
    wait_until(lambda: statuses(sql) == {"processing": 2}, 20, "both tasks processing")
    assert worker.stop(signal.SIGTERM, timeout=15) == 0
    rows = sql.execute("SELECT status::text, retry_count, worker_id FROM background_tasks WHERE id = ANY(%s)",
                       (ids,)).fetchall()
    assert rows == [{"status": "pending", "retry_count": 0, "worker_id": None}] * 2
    assert one(sql, "SELECT stopped_at FROM bgtasks_workers")["stopped_at"] is not None


def test_finished_work_runs_as_soon_as_capacity_frees_not_at_the_next_poll(sql: psycopg.Connection[Any],
                                                                         procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET poll_interval = 60000")
    procs.worker(concurrency=1)
    insert(sql, "sleep", 3, {"seconds": 0.2, "steps": 1})
    wait_until(lambda: all_done(sql, 3), 5, "three tasks through one thread without polling")


def test_room_freed_under_a_global_limit_is_used_at_once_not_at_the_next_poll(sql: psycopg.Connection[Any],
                                                                            procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET poll_interval = 60000, max_concurrent_tasks = 2")
    procs.worker(concurrency=4)
    procs.worker(concurrency=4)
    insert(sql, "sleep", 30, {"seconds": 0.05, "steps": 1})
    wait_until(lambda: all_done(sql, 30), 15, "30 tasks through a limit of 2 without waiting for polls")
    assert peak_concurrency(procs.journal_lines()) <= 2


def _peak_processing_while(sql: psycopg.Connection[Any], done: Any, timeout: float) -> int:
    """The most `processing` rows seen at once, sampling as fast as the database answers, until done()."""
    peak = 0
    deadline = time.monotonic() + timeout
    while not done():
        peak = max(peak, one(sql,
            "SELECT count(*) AS n FROM background_tasks WHERE status = 'processing'")["n"])
        assert time.monotonic() < deadline, "timed out waiting for the tasks to complete"
    return peak


def test_short_tasks_are_claimed_ahead_and_only_with_claim_ahead_on(sql: psycopg.Connection[Any],
                                                                     procs: Processes) -> None:
    # A worker holds at most its threads' tasks (claim ahead off) or 1 + 3 per thread (on); in the table,
    # tasks it finished stay `processing` until their completion is written, which may double the count.
    procs.worker(concurrency=2)
    insert(sql, "noop", 3000)
    peak = _peak_processing_while(sql, lambda: all_done(sql, 3000), 60)
    print(f"claim ahead on: peak {peak} processing")
    assert 2 * 2 < peak <= 2 * 8, peak
    procs.stop_all()

    sql.execute("TRUNCATE background_tasks CASCADE")
    procs.worker(concurrency=2, BGTASKS_CLAIM_AHEAD_MS="0")
    insert(sql, "noop", 1000)
    peak = _peak_processing_while(sql, lambda: all_done(sql, 1000), 60)
    print(f"claim ahead off: peak {peak} processing")
    assert peak <= 2 * 2, peak


def test_tasks_claimed_ahead_behind_a_long_task_go_back_and_run_elsewhere(sql: psycopg.Connection[Any],
                                                                          procs: Processes) -> None:
    busy = procs.worker(concurrency=1)
    insert(sql, "noop", 50)  # this worker learns that its tasks are short
    wait_until(lambda: all_done(sql, 50), 20, "the warm-up tasks completed")
    sql.execute("UPDATE task_queue_settings SET is_active = false")
    # Long enough that the other worker is up (a few seconds on a loaded machine) while it still runs.
    [long_id] = insert(sql, "sleep", 1, {"seconds": 10, "steps": 10}, priority=10)
    short = insert(sql, "noop", 3)
    sql.execute("UPDATE task_queue_settings SET is_active = true")
    wait_until(lambda: any(ln["task"] == long_id and ln["event"] == "start" for ln in procs.journal_lines()),
               20, "the long task to start")
    other = procs.worker(concurrency=1)  # only now: what the busy worker claimed ahead must come back to it
    wait_until(lambda: all_done(sql, 53), 20, "the short tasks completed on the other worker")

    starts = [ln for ln in procs.journal_lines() if ln["event"] == "start" and ln["task"] in short]
    assert sorted(ln["task"] for ln in starts) == sorted(short), "each short task started exactly once"
    assert {ln["pid"] for ln in starts} == {other.popen.pid}
    assert statuses(sql)["processing"] == 1, "the long task is still running on the busy worker"
    wait_until(lambda: all_done(sql, 54), 20, "the long task completed")
    assert busy.popen.poll() is None
    rows = sql.execute("SELECT attempt, retry_count FROM background_tasks WHERE id = ANY(%s)", (short,)).fetchall()
    assert all(r["retry_count"] == 0 for r in rows), rows  # handed back, not failed: no retry counted
    assert any(r["attempt"] == 2 for r in rows), rows  # the busy worker had claimed them (attempt 1)


def test_completions_and_heartbeats_of_one_worker_never_lose_a_write_or_deadlock(database_url: str,
                                                                               sql: psycopg.Connection[Any]) -> None:
    """The consumer completes and claims in one round trip while the heartbeat extends the leases of the same
    rows from another connection: every completion lands, and the two never deadlock."""
    insert(sql, "noop", 3000)
    consumer = psycopg.connect(database_url, autocommit=True, row_factory=dict_row)
    heartbeat = psycopg.connect(database_url, autocommit=True, row_factory=dict_row)
    held: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                if ids := list(held):
                    store.extend_leases(heartbeat, "w", ids, 60)
            except psycopg.Error as exc:
                errors.append(repr(exc))

    thread = threading.Thread(target=beat)
    thread.start()
    lost: list[dict[str, Any]] = []
    try:
        finished: list[tuple[str, int, Any]] = []
        while True:
            rows, _ = store.complete_and_claim(consumer, finished, "w", 2, 60)
            if finished:
                lost += sql.execute("SELECT id, status::text FROM background_tasks WHERE id = ANY(%s) AND "
                                    "status <> 'completed'", ([f[0] for f in finished],)).fetchall()
            if not rows:
                break
            held[:] = [r["id"] for r in rows]
            finished = [(r["id"], r["attempt"], None) for r in rows]
    finally:
        stop.set()
        thread.join()
        consumer.close()
        heartbeat.close()
    assert lost == [] and errors == []
    assert all_done(sql, 3000)


def test_awaiting_async_tasks_hold_no_thread_and_the_slots_bound_what_runs(sql: psycopg.Connection[Any],
                                                                           procs: Processes) -> None:
    """Issue 22: one thread starts 20 async tasks that all await at once (a thread each would run them one
    by one), and the concurrency, not the threads, bounds what runs: 40 tasks on 20 slots never exceed 20."""
    procs.worker(concurrency=20, BGTASKS_WORKER_THREADS="1")
    insert(sql, "sleep", 40, {"seconds": 1.5, "steps": 1})
    wait_until(lambda: all_done(sql, 40), 60, "40 async sleeps through 20 slots on one thread")
    lines = procs.journal_lines()
    assert peak_concurrency(lines) == 20, peak_concurrency(lines)
    assert {ln.get("error") for ln in lines if ln["event"] == "end"} == {None}
