"""Per-user limits (user_limits) for the API and the CLI (asyncpg): what applies to a user, and the rows
superusers change. The limits themselves are enforced in SQL (migration 0008) and by the schedule checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import asyncpg

from .. import queries

Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"

# The columns a superuser sets, in the order set_user_limits takes them.
COLUMNS = ("max_running", "max_created_per_minute", "max_schedules", "min_schedule_period_s", "max_streams")
DEFAULTS = "*"


async def effective(conn: Executor, user_id: str) -> asyncpg.Record:
    """The limits that apply to `user_id` (NULL: none)."""
    row = await conn.fetchrow(queries.get("user_limits_for").sql, user_id)
    assert row is not None
    return row


async def own(conn: Executor, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("get_user_limits").sql, user_id)


async def list_all(conn: Executor) -> list[asyncpg.Record]:
    return list(await conn.fetch(queries.get("list_user_limits").sql))


async def set_limits(conn: Executor, user_id: str, changes: Mapping[str, int | None]) -> asyncpg.Record:
    """Set the given columns (None: back to the default, or for '*' no limit); the others keep their value."""
    unknown = set(changes) - set(COLUMNS)
    if unknown:
        raise ValueError(f"not a limit: {', '.join(sorted(unknown))}")
    row = await conn.fetchrow(
        queries.get("set_user_limits").sql,
        user_id,
        *(changes.get(c) for c in COLUMNS),
        [c in changes for c in COLUMNS],
    )
    assert row is not None
    return row


async def delete(conn: Executor, user_id: str) -> asyncpg.Record | None:
    """Remove a user's own row (the defaults apply again); None when there was none. Never the '*' row."""
    return await conn.fetchrow(queries.get("delete_user_limits").sql, user_id)
