"""Database outages are nobody's fault: tasks running on live workers while their PostgreSQL is down for
longer than the lease spend no attempt (tasks with maxRetries 0 all end completed).

The test stops and starts a PostgreSQL of its own (the session's server stays up for the other tests). Short
form here; the long form, a 60 s outage, by hand:
`BGTASKS_OUTAGE_S=60 python -m pytest tests/e2e/test_outages.py -s -n 0`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bgtasks import db
from bgtasks.embedded import EmbeddedPostgres
from tests.processes import processes, wait_until

pytestmark = pytest.mark.slow

LEASE_S = 3.0
HEARTBEAT_S = 0.5
REAP_INTERVAL_S = 0.5
GRACE_S = 2 * (HEARTBEAT_S + REAP_INTERVAL_S)  # Settings.reap_grace_s of these workers
OUTAGE_S = float(os.environ.get("BGTASKS_OUTAGE_S", LEASE_S + 0.5))
ENV = {"BGTASKS_LEASE_S": str(LEASE_S), "BGTASKS_HEARTBEAT_S": str(HEARTBEAT_S),
       "BGTASKS_REAP_INTERVAL_S": str(REAP_INTERVAL_S)}


@pytest.fixture
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server for this test alone, migrated, that the test may stop and start. Not under
    tmp_path: pytest makes its temporary root private again (the server runs as another user when root)."""
    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="bgtasks-outage-pg-")), fast=True)
    pg.start()
    try:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bgtasks")
        db.migrate(pg.url("bgtasks"))
        yield pg
    finally:
        pg.destroy()


def _query(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    """One statement on a fresh connection, waiting out a server that is starting."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with db.sync_connect(url, connect_timeout=2) as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_an_outage_longer_than_the_lease_costs_no_attempt(tmp_path: Path, own_pg: EmbeddedPostgres) -> None:
    url = own_pg.url("bgtasks")
    seconds = OUTAGE_S + 4  # each task runs through the outage
    ids = [r["id"] for r in _query(
        url, "INSERT INTO background_tasks (task_type, user_id, payload, max_retries) "
             "SELECT 'sleep', 'tester', %s::jsonb, 0 FROM generate_series(1, 4) RETURNING id",
        f'{{"seconds": {seconds}, "steps": {int(seconds * 2)}}}')]
    with processes(tmp_path, url) as ps:
        ps.worker(concurrency=2, **ENV)
        ps.worker(concurrency=2, **ENV)
        wait_until(lambda: sum(ln["event"] == "start" for ln in ps.journal_lines()) == 4, 30,
                   "all four tasks running")
        own_pg.stop()
        stopped = time.time()  # no renewal after this: every lease ends by stopped + LEASE_S

        def leases_ran_out() -> bool:
            """The outage itself, until every lease has run out: each worker stopped its actors (fenced, in the
            journal) and the database's leases are past their end."""
            ends = sum(ln["event"] == "end" and ln["t"] > stopped for ln in ps.journal_lines())
            return ends == 4 and time.time() > stopped + OUTAGE_S

        wait_until(leases_ran_out, 30 + OUTAGE_S, "every lease to run out in the outage")
        own_pg.start()
        # A reaper as eager as can be (a third worker's, every 50 ms, with the same grace as the workers').
        reaped = 0

        def finished() -> bool:
            nonlocal reaped
            reaped += _query(url, "SELECT reap_expired_leases(100, %s) AS n", GRACE_S)[0]["n"]
            return _query(url, "SELECT bool_and(status = 'completed') AS ok FROM background_tasks")[0]["ok"]

        try:
            wait_until(finished, 60 + seconds * 2, "every task to complete after the outage")
        except AssertionError as exc:
            state = _query(url, "SELECT id, status::text, attempt, retry_count, worker_id FROM background_tasks")
            errors = _query(url, "SELECT task_id, attempt, error_type, error_message FROM task_attempt_errors")
            raise AssertionError(f"{exc}: tasks {state}; attempt errors {errors}") from None
    rows = _query(url, "SELECT id, status::text, retry_count FROM background_tasks ORDER BY id")
    assert [(r["status"], r["retry_count"]) for r in rows] == [("completed", 0)] * 4, rows
    assert _query(url, "SELECT task_id, error_type, error_message FROM task_attempt_errors") == []
    assert reaped == 0
    assert sorted(r["id"] for r in rows) == sorted(ids)
