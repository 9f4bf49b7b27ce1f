"""Retention: 50,000 old finished tasks are deleted in small batches while worker processes claim new work,
and the claims are never held up by it; one process at a time runs it; notifications stay chunked."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
import pytest

from bgtasks import db
from bgtasks.retention import DAY_S, retention_pass, run_retention
from tests.processes import Processes, wait_until

pytestmark = pytest.mark.slow


def _insert_old_finished(sql: psycopg.Connection[Any], n: int) -> None:
    # Inserts may set a final status directly (the BEFORE trigger guards updates only); the AFTER trigger
    # still counts them in task_counts.
    sql.execute("""
        INSERT INTO background_tasks (task_type, user_id, status, progress, created_at, started_at, completed_at)
        SELECT 'noop', 'user' || (i %% 7), (ARRAY['completed', 'error', 'cancelled'])[1 + i %% 3]::task_status,
               100, now() - interval '40 days', now() - interval '40 days',
               now() - interval '10 days' - make_interval(secs => i)
        FROM generate_series(1, %s) i""", (n,))


def test_retention_deletes_50000_finished_tasks_without_holding_up_claims(
        database_url: str, sql: psycopg.Connection[Any], procs: Processes) -> None:
    total_old = 50_000
    _insert_old_finished(sql, total_old)
    listener = psycopg.connect(database_url, autocommit=True)
    listener.execute("LISTEN bgtasks_tasks")
    workers = [procs.worker(concurrency=4, BGTASKS_RETENTION_DAYS="0") for _ in range(2)]
    assert all(w.popen.poll() is None for w in workers)

    batches: list[tuple[float, float, int]] = []  # (start, end, deleted) per batch
    purge_done = threading.Event()
    purged: dict[str, Any] = {}

    def purge() -> None:
        with db.sync_connect(database_url) as conn:
            last = [time.time()]

            def on_batch(n: int) -> None:
                now = time.time()
                batches.append((last[0], now, n))
                last[0] = now

            try:
                purged["n"] = run_retention(conn, 7 * DAY_S, 1000, pause_s=0.05, on_batch=on_batch)
            except BaseException as exc:  # reported by the main thread
                purged["error"] = exc
            finally:
                purge_done.set()

    purge_start = time.time()
    thread = threading.Thread(target=purge, name="test-purge")
    thread.start()
    # New work arrives all through the purge: 500 noops, 10 at a time.
    new_ids: list[str] = []
    for _ in range(50):
        rows = sql.execute("INSERT INTO background_tasks (task_type, user_id) SELECT 'noop', 'fresh' "
                           "FROM generate_series(1, 10) RETURNING id").fetchall()
        new_ids += [r["id"] for r in rows]
        time.sleep(0.05)
    thread.join(timeout=240)
    assert not thread.is_alive(), "the purge did not finish in 240 s"
    assert "error" not in purged, purged.get("error")
    purge_end = time.time()

    def all_done() -> bool:
        row = sql.execute("SELECT count(*) AS n FROM background_tasks WHERE id = ANY(%s) AND status = 'completed'",
                          (new_ids,)).fetchone()
        return row is not None and row["n"] == len(new_ids)

    wait_until(all_done, 60, "all 500 new tasks to complete")

    assert purged["n"] == total_old
    assert sql.execute("SELECT count(*) AS n FROM background_tasks WHERE user_id <> 'fresh'").fetchone() == {"n": 0}
    assert sum(n for _, _, n in batches) == total_old and max(n for _, _, n in batches) == 1000
    counts = {r["status"]: r["tasks"] for r in sql.execute("SELECT * FROM task_status_counts").fetchall()}
    assert counts == {"pending": 0, "processing": 0, "completed": 500, "error": 0, "cancelled": 0}

    # Claims went on during the purge, each within moments of its task falling due.
    timing = sql.execute("""
        SELECT extract(epoch FROM started_at)::float AS started,
               extract(epoch FROM started_at - run_at)::float AS claim_s
        FROM background_tasks WHERE id = ANY(%s)""", (new_ids,)).fetchall()
    during = [t for t in timing if purge_start <= t["started"] <= purge_end]
    assert len(during) >= 100, f"only {len(during)} of 500 claims overlapped the purge ({purge_end - purge_start:.1f}s)"
    worst = max(t["claim_s"] for t in timing)  # a figure for the log; bench/ measures claim latency
    starts = [ln for ln in procs.journal_lines() if ln["event"] == "start"]
    assert len({ln["task"] for ln in starts}) == 500 and len({ln["pid"] for ln in starts}) == 2

    # The DELETE trigger notifies per statement in ~7 kB chunks: hundreds of NOTIFYs, not 50,000.
    deleted_entries = notifications = 0
    for note in listener.notifies(timeout=1.0, stop_after=None):
        entries = [e for e in json.loads(note.payload) if e["status"] == "deleted"]
        if entries:
            notifications += 1
            deleted_entries += len(entries)
    listener.close()
    print(f"purge {purge_end - purge_start:.1f}s in {len(batches)} batches, {len(during)} claims during it, "
          f"worst claim latency {worst * 1000:.0f} ms, {notifications} NOTIFYs for {deleted_entries} rows")
    assert deleted_entries == total_old
    assert notifications <= total_old // 50, f"{notifications} notifications for {total_old} deleted rows"


def test_only_one_process_runs_retention_at_a_time(database_url: str, sql: psycopg.Connection[Any]) -> None:
    _insert_old_finished(sql, 30)
    with db.sync_connect(database_url) as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(hashtext('bgtasks.retention')) AS ok").fetchone() == {
            "ok": True}
        assert retention_pass(database_url, 7 * DAY_S, 10) is None  # someone else is running it
    assert retention_pass(database_url, 7 * DAY_S, 10) == 30  # the lock went with the holder's session
    assert retention_pass(database_url, 7 * DAY_S, 10) == 0


def test_keeps_recent_and_unfinished_tasks(database_url: str, sql: psycopg.Connection[Any]) -> None:
    _insert_old_finished(sql, 5)
    sql.execute("INSERT INTO background_tasks (task_type, user_id, status, completed_at) VALUES "
                "('noop', 'u', 'completed', now() - interval '1 day')")
    sql.execute("INSERT INTO background_tasks (task_type, user_id, created_at) VALUES "
                "('noop', 'u', now() - interval '90 days')")
    assert retention_pass(database_url, 7 * DAY_S) == 5
    left = sql.execute("SELECT status::text FROM background_tasks ORDER BY status").fetchall()
    assert sorted(r["status"] for r in left) == ["completed", "pending"]


def test_a_worker_runs_retention_by_itself(database_url: str, sql: psycopg.Connection[Any], procs: Processes) -> None:
    _insert_old_finished(sql, 2500)
    sql.execute("INSERT INTO background_tasks (task_type, user_id, status, completed_at) VALUES "
                "('noop', 'u', 'completed', now() - interval '1 hour')")
    workers = [procs.worker(concurrency=2, BGTASKS_RETENTION_DAYS="1", BGTASKS_LOG_LEVEL="DEBUG") for _ in range(2)]

    def purged() -> bool:
        row = sql.execute("SELECT count(*) AS n FROM background_tasks").fetchone()
        return row is not None and row["n"] == 1

    wait_until(purged, 30, "the workers' retention to delete the old tasks")

    def logs() -> str:
        return "".join(p.output() for p in procs.procs)

    wait_until(lambda: "retention: deleted 2500" in logs(), 10, "the worker to log its retention pass")
    # The other worker's first pass found the lock taken, or nothing left to delete.
    wait_until(lambda: all("retention: " in w.output() for w in workers), 20, "both workers' first pass")
    assert logs().count("retention: deleted") == 1, logs()[-3000:]  # one worker did it, in one pass
