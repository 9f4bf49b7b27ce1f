"""The scheduler tick's and the chain's queries over psycopg (worker processes are synchronous)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .driver import Conn, run


def lock_due_schedules(conn: Conn, limit: int, now: datetime | None = None) -> list[dict[str, Any]]:
    return list(run(conn, "lock_due_schedules", limit, now).fetchall())


# A schedule is named by its owner and its name (names are unique per owner).

def enqueue_scheduled_tasks(conn: Conn, user_id: str, name: str, due: list[datetime]) -> list[str]:
    return [r["id"] for r in run(conn, "enqueue_scheduled_tasks", name, due, user_id).fetchall()]


def advance_schedule(conn: Conn, user_id: str, name: str, next_run_at: datetime,
                     last_run_at: datetime | None, skipped_because: str | None = None) -> None:
    run(conn, "advance_schedule", name, next_run_at, last_run_at, user_id, skipped_because)


def disable_schedule(conn: Conn, user_id: str, name: str, why: str) -> None:
    run(conn, "disable_schedule", name, why, user_id)


def task_upstream_results(conn: Conn, task_id: str) -> dict[str, Any]:
    row = run(conn, "task_upstream_results", task_id).fetchone()
    return dict(row["results"]) if row and row["results"] else {}
