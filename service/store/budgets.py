"""Provider budgets (provider_budgets, migration 0016) for the API, the CLI and /metrics (asyncpg). The worker
reserves and settles through store/worker.py; the counting itself is SQL (reserve_provider_budget())."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from .. import queries

Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"


async def list_all(conn: Executor) -> list[asyncpg.Record]:
    return list(await conn.fetch(queries.get("list_provider_budgets").sql))


async def get(conn: Executor, provider: str, model: str) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("get_provider_budget").sql, provider, model)


async def set_budget(conn: Executor, provider: str, model: str, requests_per_minute: int | None,
                     tokens_per_minute: int | None, window_s: float | None) -> None:
    await conn.execute(queries.get("set_provider_budget").sql, provider, model, requests_per_minute,
                       tokens_per_minute, window_s)


async def delete(conn: Executor, provider: str, model: str) -> bool:
    return await conn.fetchrow(queries.get("delete_provider_budget").sql, provider, model) is not None
