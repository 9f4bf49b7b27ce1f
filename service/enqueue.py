"""`bgtasks.enqueue(conn, "summarize", {...}, user_id=...)`: create a task inside the application's own
transaction (asyncpg, or psycopg sync or async). The task exists only if that transaction commits; the commit
is what wakes a worker (the insert trigger's NOTIFY is delivered at commit). The payload is checked against the
schema a worker published, else the type defined in this process."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any, overload

import asyncpg
import psycopg
from psycopg.rows import tuple_row

from . import actors, queries
from .api.validation import check_json_value, check_payload
from .errors import ValidationFailed


def _definition(task_type: str, published: tuple[str, int] | None) -> actors.TaskType:
    if published is not None:
        return actors.TaskType(task_type, "", "", json.loads(published[0]), max_retries=published[1])
    local = actors.get_task_type(task_type)
    if local is None:
        raise ValidationFailed("taskType", f"unknown task type {task_type[:50]!r}: no worker has published it "
                                           "and this process does not define it")
    return local


def _args(definition: actors.TaskType, payload: Mapping[str, Any] | None, user_id: str, priority: int,
          max_retries: int | None, label: str | None, description: str | None, run_at: datetime | None,
          idempotency_key: str | None) -> tuple[Any, ...]:
    checked = check_payload(definition, dict(payload or {}))
    check_json_value(checked, "payload")
    if not user_id:
        raise ValidationFailed("user_id", "required: whose task it is")
    return (definition.name, user_id, json.dumps(checked), priority,
            definition.max_retries if max_retries is None else max_retries, label, description, run_at,
            idempotency_key)


def _enqueue_sync(conn: psycopg.Connection[Any], task_type: str, *rest: Any) -> str:
    lookup, insert = queries.get("published_task_type"), queries.get("enqueue_one")
    with conn.cursor(row_factory=tuple_row) as cur:
        published = cur.execute(lookup.psycopg_sql, lookup.psycopg_params(task_type)).fetchone()
        args = _args(_definition(task_type, published), *rest)
        row = cur.execute(insert.psycopg_sql, insert.psycopg_params(*args)).fetchone()
    assert row is not None
    return str(row[0])


async def _enqueue_psycopg_async(conn: psycopg.AsyncConnection[Any], task_type: str, *rest: Any) -> str:
    lookup, insert = queries.get("published_task_type"), queries.get("enqueue_one")
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(lookup.psycopg_sql, lookup.psycopg_params(task_type))
        published = await cur.fetchone()
        args = _args(_definition(task_type, published), *rest)
        await cur.execute(insert.psycopg_sql, insert.psycopg_params(*args))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def _enqueue_asyncpg(conn: asyncpg.Connection | asyncpg.Pool, task_type: str, *rest: Any) -> str:
    found = await conn.fetchrow(queries.get("published_task_type").sql, task_type)
    published = (found["payload_schema"], found["max_retries"]) if found is not None else None
    args = _args(_definition(task_type, published), *rest)
    return str(await conn.fetchval(queries.get("enqueue_one").sql, *args))


@overload
def enqueue(conn: psycopg.Connection[Any], task_type: str, payload: Mapping[str, Any] | None = None, *,
            user_id: str, priority: int = 0, max_retries: int | None = None, label: str | None = None,
            description: str | None = None, run_at: datetime | None = None,
            idempotency_key: str | None = None) -> str: ...


@overload
def enqueue(conn: asyncpg.Connection | asyncpg.Pool | psycopg.AsyncConnection[Any], task_type: str,
            payload: Mapping[str, Any] | None = None, *, user_id: str, priority: int = 0,
            max_retries: int | None = None, label: str | None = None, description: str | None = None,
            run_at: datetime | None = None, idempotency_key: str | None = None) -> Awaitable[str]: ...


def enqueue(conn: Any, task_type: str, payload: Mapping[str, Any] | None = None, *, user_id: str,
            priority: int = 0, max_retries: int | None = None, label: str | None = None,
            description: str | None = None, run_at: datetime | None = None,
            idempotency_key: str | None = None) -> str | Awaitable[str]:
    """Create a task on the caller's connection, in its transaction; returns the task id (awaitable for
    asyncpg and psycopg's AsyncConnection). Raises ValidationFailed naming the field for a bad payload or
    an unknown type. A repeated (user_id, idempotency_key) returns the first task's id."""
    rest = (payload, user_id, priority, max_retries, label, description, run_at, idempotency_key)
    if isinstance(conn, psycopg.Connection):
        return _enqueue_sync(conn, task_type, *rest)
    if isinstance(conn, psycopg.AsyncConnection):
        return _enqueue_psycopg_async(conn, task_type, *rest)
    if isinstance(conn, (asyncpg.Connection, asyncpg.Pool)) or hasattr(conn, "fetchval"):
        return _enqueue_asyncpg(conn, task_type, *rest)
    raise TypeError(f"enqueue() needs an asyncpg or psycopg connection, not {type(conn).__name__} "
                    "(from anything else: SELECT id FROM enqueue_task(...), docs/operations.md)")
