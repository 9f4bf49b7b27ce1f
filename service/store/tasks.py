"""Task rows for the API and the Python client (asyncpg): create in batches, read, list with filters and
cursors, change (through the SQL functions and guarded UPDATEs), delete, count by status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from .. import db, queries
from ..errors import IllegalTransition


@dataclass
class TaskSpec:
    """What it takes to create a task (the API validates before building one)."""

    task_type: str
    user_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_retries: int = 3
    project_id: str | None = None
    project_name: str | None = None
    project_path: str | None = None
    label: str | None = None
    description: str | None = None
    run_at: datetime | None = None
    idempotency_key: str | None = None
    schedule_name: str | None = None
    scheduled_for: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict(): that deep-copies the payload, and was 40% of the Python
        # time of creating a batch.
        out = {f.name: getattr(self, f.name) for f in _SPEC_FIELDS}
        for key in ("run_at", "scheduled_for"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


_SPEC_FIELDS = fields(TaskSpec)


Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def create_tasks(conn: Executor, specs: Sequence[TaskSpec]) -> list[asyncpg.Record]:
    """Insert every spec in one statement (one NOTIFY for the batch); returns the rows in no set order.

    A spec whose (user, idempotency key) already exists returns that first task instead of a new one.
    """
    if not specs:
        return []
    # The pool's codec encodes the list as JSON.
    try:
        rows = await conn.fetch(queries.get("create_tasks").sql, [s.as_json() for s in specs])
    except asyncpg.PostgresError as exc:
        ours = db.translate(exc)  # BG429: over the user's creation rate
        if ours is None:
            raise
        raise ours from exc
    # A concurrent create with the same key commits after our statement's snapshot: ON CONFLICT skipped our
    # row, and the statement could not see theirs. Read it now (a second round trip only in that race).
    found = {(r["user_id"], r["idempotency_key"]) for r in rows if r["idempotency_key"] is not None}
    for spec in specs:
        key = (spec.user_id, spec.idempotency_key)
        if spec.idempotency_key is not None and key not in found:
            row = await conn.fetchrow(queries.get("get_task_by_idempotency_key").sql, *key)
            if row is not None:
                rows.append(row)
                found.add(key)
    return rows


async def create_task(conn: Executor, spec: TaskSpec) -> asyncpg.Record:
    rows = await create_tasks(conn, [spec])
    return rows[0]


async def get_task(conn: Executor, task_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("get_task").sql, task_id)


# ---------------------------------------------------------------- listing

# The fields a search (`q=`) matches, as the API names them: task_filter's $7 ILIKE reads exactly these columns
# (service/sql/tasks.sql). The dashboard gets this list embedded in its page, so a live row matches as a reload does.
SEARCHED_FIELDS = ("label", "description")

def like_pattern(text: str) -> str:
    """`text` as an ILIKE pattern that matches it as a plain substring."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks: every field None means no condition. `user_id` None means everyone's (superusers only)."""

    user_id: str | None = None
    statuses: Sequence[str] | None = None
    task_types: Sequence[str] | None = None
    project_id: str | None = None
    created_since: datetime | None = None
    created_until: datetime | None = None
    search: str | None = None  # substring of label or description, case-insensitive

    def params(self) -> tuple[Any, ...]:
        return (
            self.user_id,
            list(self.statuses) if self.statuses else None,
            list(self.task_types) if self.task_types else None,
            self.project_id,
            self.created_since,
            self.created_until,
            like_pattern(self.search) if self.search else None,
        )


# API sort name -> (query, the column the cursor holds)
SORTS: dict[str, tuple[str, str]] = {
    "-createdAt": ("list_tasks_created_desc", "created_at"),
    "createdAt": ("list_tasks_created_asc", "created_at"),
    "-updatedAt": ("list_tasks_updated_desc", "updated_at"),
    "updatedAt": ("list_tasks_updated_asc", "updated_at"),
    "-priority": ("list_tasks_priority_desc", "priority"),
    "priority": ("list_tasks_priority_asc", "priority"),
}


async def list_tasks(
    conn: Executor, flt: TaskFilter, *, sort: str = "-createdAt", after: tuple[Any, str] | None = None,
    limit: int = 100, preview_over_bytes: int | None = None,
) -> list[asyncpg.Record]:
    """One page in `sort` order, starting after the (sort key, id) of the previous page's last row.

    ``preview_over_bytes``: a result larger than this as JSON comes back as task_result_preview() (a few
    hundred bytes) with ``result_truncated`` true, so a page never carries large results; None: whole.
    """
    query, _ = SORTS[sort]
    key, last_id = after if after is not None else (None, None)
    return await conn.fetch(queries.get(query).sql, *flt.params(), key, last_id, limit, preview_over_bytes)


def cursor_key(row: asyncpg.Record, sort: str) -> tuple[Any, str]:
    """The (sort key, id) a page that ends with `row` continues after."""
    return row[SORTS[sort][1]], row["id"]


async def count_tasks_by_status(
    conn: Executor, user_id: str | None, task_types: Sequence[str] | None = None
) -> dict[str, int]:
    """Tasks by status from task_counts (kept by triggers; never a scan of the task table)."""
    rows = await conn.fetch(
        queries.get("count_tasks_by_status").sql, user_id, list(task_types) if task_types else None
    )
    return {r["status"]: int(r["n"]) for r in rows}


async def count_tasks_matching(conn: Executor, flt: TaskFilter, cap: int) -> tuple[dict[str, int], bool]:
    """Tasks by status under every condition of `flt` but its statuses, and whether the count stopped at
    `cap` rows (then each figure is a lower bound). Only the owner and types: task_counts, no scan; a
    project, a creation range or a search: at most `cap` rows read."""
    if flt.project_id is None and flt.created_since is None and flt.created_until is None and not flt.search:
        return await count_tasks_by_status(conn, flt.user_id, flt.task_types), False
    rows = await conn.fetch(queries.get("count_tasks_matching").sql, *replace(flt, statuses=None).params(), cap)
    counts = {r["status"]: int(r["n"]) for r in rows}
    return counts, sum(counts.values()) >= cap


# ---------------------------------------------------------------- one visible task
# `owner` is the caller's user id, or None for a superuser: another user's task is "not found".

def _illegal(exc: asyncpg.PostgresError, task_id: str) -> Exception:
    translated = db.translate(exc, task_id)
    if isinstance(translated, IllegalTransition):
        hint = getattr(exc, "hint", None)
        if hint:
            translated.args = (f"{translated.args[0]} ({hint})",)
    return translated or exc


async def get_visible_task(conn: Executor, task_id: str, owner: str | None) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("get_visible_task").sql, task_id, owner)


async def visible_task_ids(conn: Executor, task_ids: list[str], owner: str | None) -> set[str]:
    """The subset of `task_ids` the caller (owner filter; None: a superuser) may see."""
    return {r["id"] for r in await conn.fetch(queries.get("visible_task_ids").sql, task_ids, owner)}


async def cancel_visible_task(
    conn: Executor, task_id: str, owner: str | None, reason: str = "cancelled by user"
) -> asyncpg.Record | None:
    """cancel_task(); None when not visible; IllegalTransition when finished already."""
    try:
        return await conn.fetchrow(queries.get("cancel_visible_task").sql, task_id, owner, reason)
    except asyncpg.PostgresError as exc:
        raise _illegal(exc, task_id) from None


async def retry_visible_task(conn: Executor, task_id: str, owner: str | None) -> asyncpg.Record | None:
    """retry_task(); None when not visible; IllegalTransition unless error or cancelled."""
    try:
        return await conn.fetchrow(queries.get("retry_visible_task").sql, task_id, owner)
    except asyncpg.PostgresError as exc:
        raise _illegal(exc, task_id) from None


async def delete_visible_task(conn: Executor, task_id: str, owner: str | None) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("delete_visible_task").sql, task_id, owner)


_UNSET: Any = object()


async def set_task_status(
    conn: Executor, task_id: str, owner: str | None, status: str | None, *, holder: str, lease_s: float,
    error_message: Any = _UNSET, result_data: Any = _UNSET, progress: int | None = None,
    description: str | None = None,
) -> asyncpg.Record | None:
    """A status update (None keeps the status); None when not visible; IllegalTransition when the state
    machine refuses. Moving to processing makes `holder` take a new attempt with a lease of `lease_s`; an
    update by the holder of a processing task extends its lease."""
    try:
        return await conn.fetchrow(
            queries.get("set_task_status").sql, task_id, owner, status,
            error_message is not _UNSET, None if error_message is _UNSET else error_message,
            result_data is not _UNSET, None if result_data is _UNSET else result_data,
            holder, lease_s, progress, description,
        )
    except asyncpg.PostgresError as exc:
        raise _illegal(exc, task_id) from None


async def clear_completed_tasks(conn: Executor, owner: str | None, project_id: str | None = None) -> int:
    return int(await conn.fetchval(queries.get("clear_completed_tasks").sql, owner, project_id))


# ---------------------------------------------------------------- bulk, one statement each

async def _bulk(
    conn: Executor, name: str, flt: TaskFilter, ids: Sequence[str] | None, limit: int, *extra: Any
) -> list[str]:
    rows = await conn.fetch(queries.get(name).sql, *flt.params(), list(ids) if ids is not None else None,
                            limit, *extra)
    return [r["id"] for r in rows]


async def cancel_tasks_matching(
    conn: Executor, flt: TaskFilter, ids: Sequence[str] | None = None, *, limit: int = 10_000,
    reason: str = "cancelled by user",
) -> list[str]:
    """Cancel the pending or processing tasks that match (and are among `ids`, if given); their ids."""
    return await _bulk(conn, "cancel_tasks_matching", flt, ids, limit, reason)


async def retry_tasks_matching(
    conn: Executor, flt: TaskFilter, ids: Sequence[str] | None = None, *, limit: int = 10_000
) -> list[str]:
    return await _bulk(conn, "retry_tasks_matching", flt, ids, limit)


async def delete_tasks_matching(
    conn: Executor, flt: TaskFilter, ids: Sequence[str] | None = None, *, limit: int = 10_000
) -> list[str]:
    return await _bulk(conn, "delete_tasks_matching", flt, ids, limit)


async def task_attempts(conn: Executor, task_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("task_attempts").sql, task_id)


async def task_waiting_and_links(conn: Executor, task_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("task_waiting_and_links").sql, task_id)
