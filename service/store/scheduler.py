"""The scheduler tick's and the chain's queries over psycopg (worker processes are synchronous)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from .. import queries

Conn = psycopg.Connection[Any]


def _run(conn: Conn, name: str, *args: object) -> psycopg.Cursor[Any]:
    q = queries.get(name)
    # Prepared on the server (a hot path) unless the connection may not keep prepared statements: one
    # made with prepare_threshold=None, through a transaction pooler (service/connections.py).
    return conn.execute(q.psycopg_sql, q.psycopg_params(*args), prepare=conn.prepare_threshold is not None)


def lock_due_schedules(conn: Conn, limit: int, now: datetime | None = None) -> list[dict[str, Any]]:
    return list(_run(conn, "lock_due_schedules", limit, now).fetchall())


# A schedule is named by its owner and its name (names are unique per owner).

def enqueue_scheduled_tasks(conn: Conn, user_id: str, name: str, due: list[datetime]) -> list[str]:
    return [r["id"] for r in _run(conn, "enqueue_scheduled_tasks", name, due, user_id).fetchall()]


def advance_schedule(conn: Conn, user_id: str, name: str, next_run_at: datetime,
                     last_run_at: datetime | None, skipped_because: str | None = None) -> None:
    _run(conn, "advance_schedule", name, next_run_at, last_run_at, user_id, skipped_because)


def disable_schedule(conn: Conn, user_id: str, name: str, why: str) -> None:
    _run(conn, "disable_schedule", name, why, user_id)


def task_upstream_results(conn: Conn, task_id: str) -> dict[str, Any]:
    row = _run(conn, "task_upstream_results", task_id).fetchone()
    return dict(row["results"]) if row and row["results"] else {}
