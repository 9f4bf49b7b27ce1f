"""Reads for live updates (asyncpg): rows by id, rows changed since a change number, the current maximum, a
user's stream cap."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, TypeAlias

import asyncpg

from .. import queries

Executor: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


async def tasks_by_ids(conn: Executor, ids: Sequence[str]) -> list[asyncpg.Record]:
    if not ids:
        return []
    return await conn.fetch(queries.get("tasks_by_ids").sql, list(ids))


class ChangeFilter(Protocol):
    """Which changes a reader wants, as the list endpoint filters (None: no condition), and `task_ids`
    (a read token's tasks). The hub's TaskFilter is one."""

    @property
    def user_id(self) -> str | None: ...
    @property
    def statuses(self) -> Collection[str] | None: ...
    @property
    def task_types(self) -> Collection[str] | None: ...
    @property
    def project_id(self) -> str | None: ...
    @property
    def task_ids(self) -> Collection[str] | None: ...


async def _changed_since(
    conn: Executor, query: str, seq: int, flt: ChangeFilter | None, limit: int
) -> list[asyncpg.Record]:
    """One named query of changes after `seq` ($1), at most `limit` ($6), filtered by `flt` ($2-$5, $7)."""
    if flt is None:
        return await conn.fetch(queries.get(query).sql, seq, None, None, None, None, limit, None)
    return await conn.fetch(
        queries.get(query).sql,
        seq,
        flt.user_id,
        sorted(flt.statuses) if flt.statuses else None,
        sorted(flt.task_types) if flt.task_types else None,
        flt.project_id,
        limit,
        sorted(flt.task_ids) if flt.task_ids is not None else None,
    )


async def tasks_changed_since(
    conn: Executor, seq: int, flt: ChangeFilter | None = None, *, limit: int = 1000
) -> list[asyncpg.Record]:
    """Rows changed after `seq` (oldest change first), filtered like the list endpoint (and to `task_ids`)."""
    return await _changed_since(conn, "tasks_changed_since", seq, flt, limit)


async def task_output_chunks(conn: Executor, pointers: Sequence[tuple[str, int]]) -> list[asyncpg.Record]:
    """The chunks of live output that NOTIFY pointed at ((task id, change number) pairs), oldest first."""
    if not pointers:
        return []
    return await conn.fetch(
        queries.get("task_output_chunks").sql, [t for t, _ in pointers], [s for _, s in pointers]
    )


async def task_output_since(
    conn: Executor, seq: int, flt: ChangeFilter | None = None, *, limit: int = 1000
) -> list[asyncpg.Record]:
    """Live output written after `seq` (oldest first), filtered like `tasks_changed_since`."""
    return await _changed_since(conn, "task_output_since", seq, flt, limit)


async def user_stream_cap(conn: Executor, user_id: str) -> int | None:
    """The user's open-stream cap from user_limits; None: none set there (the setting applies)."""
    cap = await conn.fetchval(queries.get("user_stream_cap").sql, user_id)
    return None if cap is None else int(cap)


async def max_change_seq(conn: Executor) -> int:
    return int(await conn.fetchval(queries.get("max_change_seq").sql))


async def queue_settings_event(conn: Executor) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("queue_settings_event").sql)
