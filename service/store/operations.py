"""Operations queries: retention over psycopg (worker thread, CLI) and the /metrics numbers over asyncpg (API)."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

from .. import queries
from .driver import Conn, run, value

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


# ---------------------------------------------------------------- retention (psycopg)

def purge_finished_tasks(conn: Conn, older_than_s: float, batch_size: int) -> int:
    return int(value(run(conn, "purge_finished_tasks", older_than_s, batch_size)) or 0)


def count_purgeable_tasks(conn: Conn, older_than_s: float) -> int:
    return int(value(run(conn, "count_purgeable_tasks", older_than_s)) or 0)


def try_retention_lock(conn: Conn) -> bool:
    return bool(value(run(conn, "try_retention_lock")))


def release_retention_lock(conn: Conn) -> bool:
    return bool(value(run(conn, "release_retention_lock")))


# ---------------------------------------------------------------- metrics (asyncpg)

async def metrics_task_counts(conn: Executor) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("metrics_task_counts").sql)


async def metrics_queue_health(conn: Executor) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("metrics_queue_health").sql)


async def metrics_finished_buckets(conn: Executor, window_s: float) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("metrics_finished_buckets").sql, window_s)


async def metrics_bucket_bounds(conn: Executor) -> list[float]:
    return list(await conn.fetchval(queries.get("metrics_bucket_bounds").sql))


async def metrics_attempt_errors(conn: Executor, window_s: float) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("metrics_attempt_errors").sql, window_s)


async def metrics_model_usage(conn: Executor, window_s: float) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("metrics_model_usage").sql, window_s)
