"""The scheduler tick: every worker runs it (about twice a second); each due schedule is handled by whichever
worker locks its row first, in one short transaction, and the unique index on (schedule_name, scheduled_for)
makes a second task for the same due time impossible whatever happens. Times come from the database's clock,
so workers on hosts whose clocks disagree still agree on what is due."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from . import schedules
from .errors import ValidationFailed
from .store import scheduler as store

log = logging.getLogger("bgtasks.scheduler")

TICK_S = 0.5
BATCH = 50  # schedules one tick handles at most; a longer backlog continues at the next tick


def run_due_schedules(conn: psycopg.Connection[Any], grace_s: float = schedules.MISFIRE_GRACE_S) -> int:
    """Create the tasks of every due schedule this worker can lock; returns how many tasks it created."""
    created = 0
    with conn.transaction():
        for s in store.lock_due_schedules(conn, BATCH):
            try:
                plan = schedules.plan_tick(s["cron"], s["timezone"], s["catch_up"], s["next_run_at"],
                                           s["db_now"], grace_s)
            except ValidationFailed as exc:
                log.error("schedule %s disabled: %s", s["name"], exc)
                store.disable_schedule(conn, s["user_id"], s["name"], str(exc))
                continue
            if plan.create:
                created += len(store.enqueue_scheduled_tasks(conn, s["user_id"], s["name"], plan.create))
            store.advance_schedule(conn, s["user_id"], s["name"], plan.next_run_at, plan.create[-1] if plan.create else None)
    return created
