"""bgtasks.task_type(): an application's function becomes a registered type the worker runs with a Task."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel, Field

import bgtasks
from bgtasks import actors
from bgtasks.settings import load_settings
from bgtasks.worker import Runtime
from tests.rows import one


class Summarize(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


@pytest.fixture
def registered() -> Iterator[None]:
    before = dict(actors.TASK_TYPES)

    @bgtasks.task_type("test-summarize", description="Summarise a text", max_retries=2, time_limit_s=120)
    async def summarize(task: bgtasks.Task, payload: Summarize) -> dict[str, str]:
        await task.progress(30, "Calling the model")
        return {"summary": payload.text[:5], "attempt": str(task.attempt)}

    @bgtasks.task_type("test-echo", schema={"type": "object", "required": ["x"]})
    def echo(task: bgtasks.Task, payload: dict[str, Any]) -> dict[str, Any]:
        task.progress_sync(50)
        return {"x": payload["x"], "id": task.id}

    yield
    actors.TASK_TYPES.clear()
    actors.TASK_TYPES.update(before)


def test_the_payload_model_gives_the_schema_and_the_limits(registered: None) -> None:
    t = actors.TASK_TYPES["test-summarize"]
    assert (t.description, t.max_retries, t.time_limit_s) == ("Summarise a text", 2, 120)
    assert t.payload_schema["properties"]["text"]["minLength"] == 1
    assert actors.TASK_TYPES["test-echo"].payload_schema == {"type": "object", "required": ["x"]}


def test_a_second_function_under_a_known_name_is_refused(registered: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        bgtasks.task_type("test-echo")(lambda task, payload: None)


@pytest.mark.parametrize(("name", "payload", "expected"), [
    ("test-summarize", '{"text": "hello world"}', {"summary": "hello", "attempt": "1"}),
    ("test-echo", '{"x": 7}', {"x": 7}),
])
def test_async_and_sync_functions_run_with_a_task_and_report_progress(
    registered: None, database_url: str, sql: psycopg.Connection[Any], name: str, payload: str,
    expected: dict[str, Any],
) -> None:
    [task_id] = [r["id"] for r in sql.execute(
        "INSERT INTO background_tasks (task_type, user_id, payload) VALUES (%s, 'tester', %s) RETURNING id",
        (name, payload)).fetchall()]
    runtime = Runtime(load_settings(database_url=database_url), concurrency=1)
    try:
        [row] = runtime.claimer.claim_if_due()
        ctx = runtime.in_flight.begin(task_id, row["attempt"])
        handler = actors.TASK_TYPES[name].load()
        result = asyncio.run(handler(ctx)) if asyncio.iscoroutinefunction(handler) else handler(ctx)
    finally:
        runtime.claimer.drop_connection()
        runtime.pool.close()
    assert {k: v for k, v in result.items() if k != "id"} == expected
    assert one(sql, "SELECT progress FROM background_tasks WHERE id = %s", (task_id,))[
        "progress"] in (30, 50)
