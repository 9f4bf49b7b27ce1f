"""Operations queries: retention over psycopg (worker thread, CLI) and the /metrics numbers over asyncpg (API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg
import psycopg

from .. import queries

Conn = psycopg.Connection[Any]
Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


def _run(conn: Conn, name: str, *args: object) -> psycopg.Cursor[Any]:
    q = queries.get(name)
    return conn.execute(q.psycopg_sql, q.psycopg_params(*args))


def _value(cur: psycopg.Cursor[Any]) -> Any:
    row = cur.fetchone()
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


# ---------------------------------------------------------------- retention (psycopg)

def purge_finished_tasks(conn: Conn, older_than_s: float, batch_size: int) -> int:
    return int(_value(_run(conn, "purge_finished_tasks", older_than_s, batch_size)) or 0)


def count_purgeable_tasks(conn: Conn, older_than_s: float) -> int:
    return int(_value(_run(conn, "count_purgeable_tasks", older_than_s)) or 0)


def try_retention_lock(conn: Conn) -> bool:
    return bool(_value(_run(conn, "try_retention_lock")))


def release_retention_lock(conn: Conn) -> bool:
    return bool(_value(_run(conn, "release_retention_lock")))


# ---------------------------------------------------------------- metrics (asyncpg)

async def metrics_task_counts(conn: Executor) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("metrics_task_counts").sql)


async def metrics_queue_health(conn: Executor) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("metrics_queue_health").sql)


async def metrics_finished_buckets(conn: Executor, window_s: float, bounds: Sequence[float]) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("metrics_finished_buckets").sql, window_s, list(bounds))


async def metrics_attempt_errors(conn: Executor, window_s: float) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("metrics_attempt_errors").sql, window_s)


async def metrics_model_usage(conn: Executor, window_s: float) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("metrics_model_usage").sql, window_s)
