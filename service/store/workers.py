"""Worker processes for the API (asyncpg): the workers view (live, silent, recently stopped)."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from .. import queries

Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"


async def list_workers(conn: Executor, stopped_within_s: float, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("list_workers").sql, stopped_within_s, limit)
