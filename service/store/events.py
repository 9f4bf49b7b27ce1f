"""Reads for live updates (asyncpg): rows by id, rows changed since a change number, the current maximum, a
user's stream cap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import asyncpg

from .. import queries

Executor: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


async def tasks_by_ids(conn: Executor, ids: Sequence[str]) -> list[asyncpg.Record]:
    if not ids:
        return []
    return await conn.fetch(queries.get("tasks_by_ids").sql, list(ids))


async def _changed_since(
    conn: Executor,
    query: str,
    seq: int,
    user_id: str | None,
    statuses: Sequence[str] | None,
    task_types: Sequence[str] | None,
    project_id: str | None,
    task_ids: Sequence[str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """One named query of changes after `seq`, with the list endpoint's filters (and `task_ids`)."""
    return await conn.fetch(
        queries.get(query).sql,
        seq,
        user_id,
        list(statuses) if statuses else None,
        list(task_types) if task_types else None,
        project_id,
        limit,
        list(task_ids) if task_ids is not None else None,
    )


async def tasks_changed_since(
    conn: Executor,
    seq: int,
    *,
    user_id: str | None = None,
    statuses: Sequence[str] | None = None,
    task_types: Sequence[str] | None = None,
    project_id: str | None = None,
    task_ids: Sequence[str] | None = None,
    limit: int = 1000,
) -> list[asyncpg.Record]:
    """Rows changed after `seq` (oldest change first), filtered like the list endpoint (and to `task_ids`)."""
    return await _changed_since(
        conn, "tasks_changed_since", seq, user_id, statuses, task_types, project_id, task_ids, limit
    )


async def task_output_chunks(conn: Executor, pointers: Sequence[tuple[str, int]]) -> list[asyncpg.Record]:
    """The chunks of live output that NOTIFY pointed at ((task id, change number) pairs), oldest first."""
    if not pointers:
        return []
    return await conn.fetch(
        queries.get("task_output_chunks").sql, [t for t, _ in pointers], [s for _, s in pointers]
    )


async def task_output_since(
    conn: Executor,
    seq: int,
    *,
    user_id: str | None = None,
    statuses: Sequence[str] | None = None,
    task_types: Sequence[str] | None = None,
    project_id: str | None = None,
    task_ids: Sequence[str] | None = None,
    limit: int = 1000,
) -> list[asyncpg.Record]:
    """Live output written after `seq` (oldest first), filtered like `tasks_changed_since`."""
    return await _changed_since(
        conn, "task_output_since", seq, user_id, statuses, task_types, project_id, task_ids, limit
    )


async def user_stream_cap(conn: Executor, user_id: str) -> int | None:
    """The user's open-stream cap from user_limits; None: none set there (the setting applies)."""
    cap = await conn.fetchval(queries.get("user_stream_cap").sql, user_id)
    return None if cap is None else int(cap)


async def max_change_seq(conn: Executor) -> int:
    return int(await conn.fetchval(queries.get("max_change_seq").sql))


async def queue_settings_event(conn: Executor) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("queue_settings_event").sql)
