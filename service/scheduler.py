"""The scheduler tick: every worker runs it (about twice a second); each due schedule is handled by whichever
worker locks its row first, in one short transaction, and the unique index on (schedule_name, scheduled_for)
makes a second task for the same due time impossible whatever happens. Times come from the database's clock,
so workers on hosts whose clocks disagree still agree on what is due. Scheduled tasks count against their
owner's creation rate: a due time over it gets no task (last_error says so), and the schedule moves on."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg

from . import schedules
from .errors import ValidationFailed
from .store import scheduler as store

log = logging.getLogger("bgtasks.scheduler")

TICK_S = 0.5
BATCH = 50  # schedules one tick handles at most; a longer backlog continues at the next tick


def _enqueue(conn: psycopg.Connection[Any], user_id: str, name: str, due: list[datetime]) -> tuple[int, str | None]:
    """Create the tasks for `due` in a savepoint: over the owner's creation rate (BG429), only this schedule's
    due times are dropped, not the rest of the tick. Returns (created, why none were)."""
    try:
        with conn.transaction():
            return len(store.enqueue_scheduled_tasks(conn, user_id, name, due)), None
    except psycopg.Error as exc:
        if exc.sqlstate != "BG429":
            raise
        why = f"no task for {due[-1].isoformat()}: {str(exc).splitlines()[0]}"
        log.warning("schedule %s: %s", name, why)
        return 0, why


def run_due_schedules(conn: psycopg.Connection[Any], grace_s: float = schedules.MISFIRE_GRACE_S,
                      now: datetime | None = None) -> int:
    """Create the tasks of every due schedule this worker can lock; returns how many tasks it created.
    `now` is the database's clock unless given (tests move time instead of waiting for it)."""
    created = 0
    with conn.transaction():
        for s in store.lock_due_schedules(conn, BATCH, now):
            try:
                plan = schedules.plan_tick(s["cron"], s["timezone"], s["catch_up"], s["next_run_at"],
                                           s["db_now"], grace_s)
            except ValidationFailed as exc:
                log.error("schedule %s disabled: %s", s["name"], exc)
                store.disable_schedule(conn, s["user_id"], s["name"], str(exc))
                continue
            made, skipped = _enqueue(conn, s["user_id"], s["name"], plan.create) if plan.create else (0, None)
            created += made
            store.advance_schedule(conn, s["user_id"], s["name"], plan.next_run_at,
                                   plan.create[-1] if plan.create and skipped is None else None, skipped)
    return created
