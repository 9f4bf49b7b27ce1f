"""Workflow rows for the API and the CLI (asyncpg): creating tasks under the creation rate limit and with
dependencies, schedules, analytics. The rules live in SQL functions (migration 0002); this module calls them
and turns their SQLSTATEs (BG404, BG422, BG429) into our errors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg

from .. import db, queries, schedules
from ..errors import BgtasksError, NotFound, ValidationFailed
from . import tasks as task_store
from .tasks import TaskSpec

Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"


def translate(exc: asyncpg.PostgresError) -> BgtasksError | None:
    """BG404 here means an unknown dependency (not a task of the caller's): NotFound with the message."""
    if getattr(exc, "sqlstate", None) == "BG404":
        return NotFound(str(getattr(exc, "message", None) or exc))
    return db.translate(exc)


async def _fetch(conn: Executor, name: str, *args: Any) -> list[asyncpg.Record]:
    try:
        return await conn.fetch(queries.get(name).sql, *args)
    except asyncpg.PostgresError as exc:
        ours = translate(exc)
        if ours is None:
            raise
        raise ours from exc


# ---------------------------------------------------------------- creating tasks

async def create_tasks_checked(pool: Executor, specs: Sequence[TaskSpec],
                               depends_on: Sequence[Sequence[str] | None] | None = None) -> list[asyncpg.Record]:
    """Create tasks in one transaction: the creation rate limit first, then the rows (one INSERT), then each
    one's dependencies (`depends_on[i]` for `specs[i]`; ids of the owner's existing tasks). A task with
    dependencies is never claimable before they are recorded: nothing is visible before the commit.
    Returns the rows in the order of `specs` (as they are after their dependencies were added)."""
    if not specs:
        return []
    deps = list(depends_on or [None] * len(specs))
    if len(deps) != len(specs):
        raise ValueError("depends_on must have one entry per spec")
    if not any(deps):
        # One statement, one round trip: create_tasks checks the creation rate itself.
        return _order(await task_store.create_tasks(pool, specs), specs)
    conn_cm = pool.acquire() if isinstance(pool, asyncpg.Pool) else _Borrowed(pool)
    async with conn_cm as conn, conn.transaction():
        rows = await task_store.create_tasks(conn, specs)
        out = []
        for row, ids in zip(_order(rows, specs), deps, strict=True):
            if ids and (row.get("is_new", True) if "is_new" in row.keys() else True):
                [row] = await _fetch(conn, "add_task_dependencies", row["id"], list(ids))
            out.append(row)
        return out


class _Borrowed:
    """An already acquired connection, used like pool.acquire()."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def __aenter__(self) -> asyncpg.Connection:
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        return None


def _order(rows: Sequence[asyncpg.Record], specs: Sequence[TaskSpec]) -> list[asyncpg.Record]:
    """create_tasks returns rows in no set order: match them back to their specs (one row per spec)."""
    if len(rows) == 1 == len(specs):
        return list(rows)
    pool_rows = list(rows)
    out = []
    for s in specs:
        for i, r in enumerate(pool_rows):
            if (r["task_type"], r["user_id"], r["idempotency_key"], r["label"], r["priority"]) == (
                    s.task_type, s.user_id, s.idempotency_key, s.label, s.priority) and r["payload"] == s.payload:
                out.append(pool_rows.pop(i))
                break
        else:
            raise RuntimeError("a created task could not be matched to its spec")
    return out


async def add_task_dependencies(conn: Executor, task_id: str, depends_on: Sequence[str]) -> asyncpg.Record:
    [row] = await _fetch(conn, "add_task_dependencies", task_id, list(depends_on))
    return row


async def task_dependencies_of(conn: Executor, task_id: str) -> list[asyncpg.Record]:
    return await _fetch(conn, "task_dependencies_of", task_id)


# ---------------------------------------------------------------- schedules

SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")  # the table's CHECK (task_schedules_name_check)
SCHEDULE_FIELDS = ("task_type", "payload", "cron", "timezone", "enabled", "catch_up", "priority", "max_retries",
                   "label")


def check_schedule(cron: str | None, timezone: str | None, catch_up: str | None) -> str | None:
    """Validate what SQL cannot (cron, time zone); returns the normalised cron expression."""
    if timezone is not None:
        schedules.zone(timezone)
    if catch_up is not None and catch_up not in schedules.CATCH_UP:
        raise ValidationFailed("catchUp", f"must be one of {', '.join(schedules.CATCH_UP)}")
    return schedules.check_cron(cron) if cron is not None else None


async def list_schedules(conn: Executor, owner: str | None) -> list[asyncpg.Record]:
    return await _fetch(conn, "list_schedules", owner)


async def schedule_owner(conn: Executor, name: str, owner: str | None) -> str:
    """The owner of schedule `name`: `owner` when given (a user's own, or the one a superuser names); for a
    superuser or operator naming none, the one user who has a schedule of that name (names are per user)."""
    if owner is not None:
        return owner
    rows = await _fetch(conn, "schedule_owners", name)
    if not rows:
        raise NotFound(f"schedule {name!r} not found")
    if len(rows) > 1:
        raise ValidationFailed("userId", f"several users have a schedule named {name!r}: name its owner (userId=, or --user)")
    return str(rows[0]["user_id"])


async def get_schedule(conn: Executor, name: str, owner: str | None) -> asyncpg.Record:
    rows = await _fetch(conn, "get_schedule", name, await schedule_owner(conn, name, owner))
    if not rows:
        raise NotFound(f"schedule {name!r} not found")
    return rows[0]


async def _check_period(conn: Executor, user_id: str, cron: str, timezone: str) -> None:
    """422 (field cron) when the schedule would run more often than its owner's min_schedule_period_s."""
    [limits] = await _fetch(conn, "user_limits_for", user_id)
    schedules.check_period(cron, timezone, datetime.now(UTC), limits["min_schedule_period_s"])


async def create_schedule(conn: Executor, *, name: str, task_type: str, user_id: str, cron: str,
                          payload: dict[str, Any] | None = None, timezone: str = "UTC", enabled: bool = True,
                          catch_up: str = "skip", priority: int = 0, max_retries: int = 3,
                          label: str | None = None) -> asyncpg.Record:
    """A new schedule, within its owner's limits: 422 under the shortest period, 409 (LimitReached) past
    max_schedules."""
    if not SCHEDULE_NAME.match(name):
        raise ValidationFailed("name", "1-100 of the characters A-Z a-z 0-9 _ . : - (no spaces)")
    cron = check_schedule(cron, timezone, catch_up) or cron
    await _check_period(conn, user_id, cron, timezone)
    rows = await _fetch(conn, "create_schedule", name, task_type, payload or {}, user_id, cron,
                        timezone, enabled, catch_up, priority, max_retries, label)
    if not rows:
        raise ValidationFailed("name", f"a schedule named {name!r} exists already")
    return rows[0]


async def update_schedule(conn: Executor, name: str, owner: str | None, *, payload: dict[str, Any] | None = None,
                          cron: str | None = None, timezone: str | None = None, enabled: bool | None = None,
                          catch_up: str | None = None, priority: int | None = None,
                          max_retries: int | None = None, label: str | None = None, clear_label: bool = False,
                          task_type: str | None = None) -> asyncpg.Record:
    cron = check_schedule(cron, timezone, catch_up)
    owner_id = await schedule_owner(conn, name, owner)
    if cron is not None or timezone is not None:
        current = await get_schedule(conn, name, owner_id)
        await _check_period(conn, owner_id, cron or current["cron"], timezone or current["timezone"])
    rows = await _fetch(conn, "update_schedule", name, owner_id,
                        payload, cron, timezone, enabled, catch_up,
                        priority, max_retries, label, task_type, clear_label)
    if not rows:
        raise NotFound(f"schedule {name!r} not found")
    return rows[0]


async def delete_schedule(conn: Executor, name: str, owner: str | None) -> asyncpg.Record:
    rows = await _fetch(conn, "delete_schedule", name, await schedule_owner(conn, name, owner))
    if not rows:
        raise NotFound(f"schedule {name!r} not found")
    return rows[0]


async def run_schedule_now(conn: Executor, name: str, owner: str | None) -> asyncpg.Record:
    """A task of the schedule now (its type, payload, priority, retries and label), outside its cron."""
    rows = await _fetch(conn, "run_schedule_now", name, await schedule_owner(conn, name, owner))
    if not rows:
        raise NotFound(f"schedule {name!r} not found")
    return rows[0]


# ---------------------------------------------------------------- analytics

async def task_analytics(conn: Executor, since: datetime, until: datetime, group_by: str,
                         owner: str | None) -> list[asyncpg.Record]:
    return await _fetch(conn, "task_analytics", since, until, group_by, owner)


async def analytics_costs(conn: Executor, since: datetime, until: datetime, group_by: str,
                          owner: str | None) -> list[asyncpg.Record]:
    return await _fetch(conn, "analytics_costs", since, until, group_by, owner)


async def task_throughput(conn: Executor, since: datetime, until: datetime, bucket: str,
                          owner: str | None) -> list[asyncpg.Record]:
    return await _fetch(conn, "task_throughput", since, until, bucket, owner)
