"""The queue settings as the API reads and changes them (asyncpg)."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from .. import queries

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool
_UNSET: Any = object()


async def get_queue_settings(conn: Executor) -> asyncpg.Record:
    row = await conn.fetchrow(queries.get("get_queue_settings").sql)
    assert row is not None, "task_queue_settings has no row 1 (the migration inserts it)"
    return row


async def update_queue_settings(
    conn: Executor, *, is_active: bool | None = None, poll_interval: int | None = None,
    max_concurrent_tasks: Any = _UNSET, retry_base_delay_ms: int | None = None,
    retry_max_delay_ms: int | None = None,
) -> asyncpg.Record:
    """Change the given settings (None keeps one); `max_concurrent_tasks=None` removes the limit."""
    row = await conn.fetchrow(
        queries.get("update_queue_settings").sql, is_active, poll_interval,
        max_concurrent_tasks is not _UNSET, None if max_concurrent_tasks is _UNSET else max_concurrent_tasks,
        retry_base_delay_ms, retry_max_delay_ms,
    )
    assert row is not None
    return row
