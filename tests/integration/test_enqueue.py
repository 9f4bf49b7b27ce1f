"""bgtasks.enqueue() in the application's own transaction: asyncpg, psycopg and psycopg async; nothing on a
rollback, a task on commit that wakes an idle worker by NOTIFY (not by polling); payloads checked against the
published schema, else the local definition."""

from __future__ import annotations

from typing import Any

import asyncpg
import psycopg
import pytest

import bgtasks
from bgtasks.actors import TaskType
from bgtasks.store.task_types import publish_task_types
from tests.processes import Processes, wait_until
from tests.rows import one


def count(sql: psycopg.Connection[Any], task_type: str) -> int:
    return int(one(sql, "SELECT count(*) AS n FROM background_tasks WHERE task_type = %s",
                           (task_type,))["n"])


def publish(sql: psycopg.Connection[Any], name: str, schema: dict[str, Any]) -> None:
    sql.execute("INSERT INTO bgtasks_workers (worker_id, hostname, pid, concurrency) VALUES ('w1', 'h', 1, 1)")
    publish_task_types(sql, "w1", [TaskType(name, "app.tasks:greet", "Greet", schema, max_retries=7)])


async def test_asyncpg_rollback_creates_nothing_and_commit_creates_the_task(
        database_url: str, sql: psycopg.Connection[Any]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await bgtasks.enqueue(conn, "noop", {}, user_id="alice")
                raise RuntimeError("the web handler failed after enqueuing")
        assert count(sql, "noop") == 0
        async with conn.transaction():
            task_id = await bgtasks.enqueue(conn, "sleep", {"seconds": 0}, user_id="alice", priority=5)
            await conn.execute("SELECT 1")  # the application's own writes, same transaction
        row = one(sql, "SELECT user_id, priority, payload FROM background_tasks WHERE id = %s",
                          (task_id,))
        assert (row["user_id"], row["priority"], row["payload"]) == ("alice", 5, {"seconds": 0})
    finally:
        await conn.close()


def test_psycopg_sync_in_a_transaction(database_url: str, sql: psycopg.Connection[Any]) -> None:
    with psycopg.connect(database_url) as conn:
        bgtasks.enqueue(conn, "noop", user_id="bob")
        conn.rollback()
        assert count(sql, "noop") == 0
        with conn.transaction():
            task_id = bgtasks.enqueue(conn, "noop", user_id="bob", idempotency_key="k1")
        assert bgtasks.enqueue(conn, "noop", user_id="bob", idempotency_key="k1") == task_id
        conn.commit()
    assert count(sql, "noop") == 1


async def test_psycopg_async_checks_the_published_schema(database_url: str, sql: psycopg.Connection[Any]) -> None:
    publish(sql, "greet", {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}},
                           "required": ["name"]})
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        with pytest.raises(bgtasks.ValidationFailed) as err:
            await bgtasks.enqueue(conn, "greet", {"name": ""}, user_id="carol")
        assert err.value.field == "payload.name"
        await conn.rollback()
        with pytest.raises(bgtasks.ValidationFailed) as unknown:
            await bgtasks.enqueue(conn, "translate", {}, user_id="carol")
        assert unknown.value.field == "taskType" and "no worker has published it" in str(unknown.value)
        await conn.rollback()
        task_id = await bgtasks.enqueue(conn, "greet", {"name": "Ada"}, user_id="carol")
        await conn.commit()
    row = one(sql, "SELECT max_retries, payload FROM background_tasks WHERE id = %s", (task_id,))
    assert row["max_retries"] == 7 and row["payload"] == {"name": "Ada"}


def test_a_local_definition_checks_the_payload_before_any_worker_published(database_url: str) -> None:
    with psycopg.connect(database_url) as conn, pytest.raises(bgtasks.ValidationFailed) as err:
        bgtasks.enqueue(conn, "sleep", {"seconds": -1}, user_id="dan")
    assert err.value.field == "payload.seconds"
    with pytest.raises(TypeError, match="asyncpg or psycopg"):
        bgtasks.enqueue(object(), "noop", user_id="dan")  # type: ignore[call-overload]


async def test_a_commit_wakes_an_idle_worker_by_notify(database_url: str, sql: psycopg.Connection[Any],
                                                       procs: Processes) -> None:
    sql.execute("UPDATE task_queue_settings SET poll_interval = 3600000")  # an hour: only NOTIFY can wake it
    procs.worker(concurrency=1)
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            task_id = await bgtasks.enqueue(conn, "sleep", {"seconds": 0}, user_id="erin")
    finally:
        await conn.close()

    def status() -> str:
        return str(one(sql, "SELECT status FROM background_tasks WHERE id = %s", (task_id,))["status"])

    wait_until(lambda: status() == "completed", 30, "the enqueued task completed by a worker woken by NOTIFY")
