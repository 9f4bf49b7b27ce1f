"""A worker's own path to PostgreSQL fails (a TCP proxy in between, tests/tcp_proxy.py): frozen past its
lease, the worker stops its actors before the lease runs out (no two executions of a task overlap, never more
running than max_concurrent_tasks); cut off and back, it claims its share again within seconds; frozen by
SIGSTOP past its lease, it stops its actors first when it wakes. Long form (a 10 s cut):
`BGTASKS_CUT_S=10 python -m pytest tests/e2e/test_network_faults.py -s -n 0`."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg
import pytest

from tests.processes import Processes, peak_concurrency, wait_until
from tests.rows import one
from tests.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.slow

LEASE_S = 3.0
CUT_S = float(os.environ.get("BGTASKS_CUT_S", LEASE_S + 0.5))  # longer than the lease
ENV = {"BGTASKS_LEASE_S": str(LEASE_S), "BGTASKS_HEARTBEAT_S": "0.5", "BGTASKS_REAP_INTERVAL_S": "0.5"}


def _insert(sql: psycopg.Connection[Any], n: int, payload: str) -> list[str]:
    return [r["id"] for r in sql.execute(
        "INSERT INTO background_tasks (task_type, user_id, payload) SELECT 'sleep', 'tester', %s::jsonb "
        "FROM generate_series(1, %s) RETURNING id", (payload, n)).fetchall()]


def test_a_worker_cut_off_and_back_claims_its_share_again(database_url: str, sql: psycopg.Connection[Any],
                                                          procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 6")
    _insert(sql, 600, '{"seconds": 0.3, "steps": 1}')
    with tcp_proxy(database_url) as proxy:
        cut_off = procs.worker(concurrency=4, DATABASE_URL=proxy.url(database_url), **ENV)
        procs.worker(concurrency=4, **ENV)
        procs.worker(concurrency=4, **ENV)

        def starts_by(pid: int, after: float) -> int:
            return sum(1 for ln in procs.journal_lines()
                       if ln["event"] == "start" and ln["pid"] == pid and ln["t"] > after)

        wait_until(lambda: starts_by(cut_off.pid, 0) >= 3, 30, "the worker behind the proxy to run tasks")
        [cut_id] = [r["worker_id"] for r in sql.execute(
            "SELECT worker_id FROM bgtasks_workers WHERE pid = %s", (cut_off.pid,)).fetchall()]
        proxy.cut()
        cut = time.time()  # no renewal after this: its leases end by cut + LEASE_S

        def leases_taken_back() -> bool:
            """The cut, until the worker's leases are past their end and the others took its tasks back."""
            held = one(sql, "SELECT count(*) AS n FROM background_tasks WHERE worker_id = %s "
                            "AND status = 'processing'", (cut_id,))["n"]
            return held == 0 and time.time() > cut + CUT_S

        wait_until(leases_taken_back, 30 + CUT_S, "the cut-off worker's leases to run out and be taken back")
        proxy.restore()
        back = time.time()
        wait_until(lambda: starts_by(cut_off.pid, back) >= 5, 15,
                   "the worker cut off to claim tasks again after the cut")
        cut_off.stop()  # while its path is up: a worker stopping behind a closed proxy waits out its writes
    assert peak_concurrency(procs.journal_lines()) <= 6


def test_a_worker_frozen_off_the_database_stops_its_actors_before_its_lease_runs_out(
        database_url: str, sql: psycopg.Connection[Any], procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 2")
    ids = _insert(sql, 2, '{"seconds": 8, "steps": 16}')
    with tcp_proxy(database_url) as proxy:
        frozen = procs.worker(concurrency=2, DATABASE_URL=proxy.url(database_url), **ENV)
        wait_until(lambda: len(_starts(procs, frozen.pid)) == 2, 30, "the worker behind the proxy to run both")
        [frozen_id] = [r["worker_id"] for r in sql.execute(
            "SELECT worker_id FROM bgtasks_workers WHERE pid = %s", (frozen.pid,)).fetchall()]
        other = procs.worker(concurrency=2, **ENV)
        proxy.freeze()
        # The database's view of the frozen worker's leases, until the reaper takes them back.
        leases: dict[str, float] = {}

        def taken_over() -> bool:
            for r in sql.execute("SELECT id, lease_expires_at FROM background_tasks WHERE worker_id = %s "
                                 "AND status = 'processing'", (frozen_id,)).fetchall():
                leases[r["id"]] = r["lease_expires_at"].timestamp()
            return len(_starts(procs, other.pid)) == 2

        wait_until(taken_over, 30, "the other worker to run both tasks once the frozen worker's leases ran out")
        proxy.thaw()
        wait_until(lambda: one(sql, "SELECT bool_and(status = 'completed') AS ok FROM background_tasks")["ok"],
                   30, "both tasks to complete")
        frozen.stop()
    lines = procs.journal_lines()
    ends = {ln["task"]: ln["t"] for ln in lines if ln["event"] == "end" and ln["pid"] == frozen.pid}
    starts = {ln["task"]: ln["t"] for ln in lines if ln["event"] == "start" and ln["pid"] == other.pid}
    assert sorted(leases) == sorted(ids) == sorted(ends) == sorted(starts)
    for task in ids:
        assert ends[task] < leases[task], f"task {task}: the frozen worker's actor ran past its lease"
        assert ends[task] < starts[task], f"task {task} ran twice at once"
    assert peak_concurrency(lines) <= 2
    rows = sql.execute("SELECT worker_id, attempt FROM background_tasks ORDER BY id").fetchall()
    assert all(r["worker_id"] != frozen_id for r in rows)
    assert "fenced" in frozen.output()


def test_a_worker_woken_from_sigstop_past_its_lease_stops_its_actors_first(
        sql: psycopg.Connection[Any], procs: Processes) -> None:
    """Frozen by SIGSTOP, a process cannot act; on waking past its leases it stops those actors (they are
    another worker's now) instead of carrying on, and writes nothing for them."""
    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 2")
    ids = _insert(sql, 2, '{"seconds": 8, "steps": 16}')
    frozen = procs.worker(concurrency=2, **ENV)
    wait_until(lambda: len(_starts(procs, frozen.pid)) == 2, 30, "the first worker to run both tasks")
    other = procs.worker(concurrency=2, **ENV)
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: len(_starts(procs, other.pid)) == 2, 30,
                   "the other worker to take both tasks over once the frozen worker's leases ran out")
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    wait_until(lambda: sum(1 for ln in procs.journal_lines() if ln["event"] == "end" and ln["pid"] == frozen.pid)
               == 2, 15, "the woken worker to stop both actors")
    wait_until(lambda: one(sql, "SELECT bool_and(status = 'completed') AS ok FROM background_tasks")["ok"],
               30, "both tasks to complete")
    ends = [ln for ln in procs.journal_lines() if ln["event"] == "end" and ln["pid"] == frozen.pid]
    assert sorted(ln["task"] for ln in ends) == sorted(ids)
    assert all(ln.get("error") for ln in ends), ends  # stopped, not run to the end
    [other_id] = [r["worker_id"] for r in sql.execute(
        "SELECT worker_id FROM bgtasks_workers WHERE pid = %s", (other.pid,)).fetchall()]
    rows = sql.execute("SELECT worker_id, result_data FROM background_tasks").fetchall()
    assert all(r["worker_id"] == other_id and r["result_data"] == {"slept": 8} for r in rows), rows
    assert "fenced" in frozen.output()


def _starts(procs: Processes, pid: int) -> list[dict[str, Any]]:
    return [ln for ln in procs.journal_lines() if ln["event"] == "start" and ln["pid"] == pid]
