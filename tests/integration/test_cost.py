"""Cost (issue 18): each model call's cost is the model's price (model_prices) times its recorded usage, summed
per task over retries and re-asks, and reported by GET /api/tasks/{id} and /api/usage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

import bgtasks
from bgtasks import actors, cli
from bgtasks.errors import SpendingCapReached
from bgtasks.settings import load_settings
from bgtasks.store import worker as worker_store
from bgtasks.worker import Runtime
from tests.fakes.openai_server import FakeOpenAI, answer, wrong_schema
from tests.integration.test_sse import Api, insert
from tests.integration.test_sse import start_api as start_api  # the fixture, shared
from tests.rows import one

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"],
          "additionalProperties": False}


@pytest.fixture
def asker_type() -> Iterator[None]:
    before = dict(actors.TASK_TYPES)

    @bgtasks.task_type("test-asker", description="One structured model call")
    async def ask(task: bgtasks.Task, payload: dict[str, Any]) -> Any:
        return await task.ask_model(system="You title.", user="A title, please.", schema_name="title",
                                    schema=SCHEMA)

    yield
    actors.TASK_TYPES.clear()
    actors.TASK_TYPES.update(before)


def run_attempt(database_url: str, base_url: str, task_id: str, finish: str) -> None:
    """One attempt in a worker's code: claim, the actor, then complete it or fail it (to be retried)."""
    settings = load_settings(database_url=database_url, openai_api_key="test-key", openai_base_url=base_url,
                             bgtasks_model="fake-model")
    runtime = Runtime(settings, concurrency=1)
    try:
        [row] = runtime.claimer.claim_if_due()
        ctx = runtime.in_flight.begin(task_id, row["attempt"])
        result = asyncio.run(actors.TASK_TYPES["test-asker"].load()(ctx))
        with runtime.pool.connection() as conn:
            if finish == "complete":
                worker_store.complete_tasks(conn, [(task_id, row["attempt"], result)])
            else:
                worker_store.fail_task(conn, task_id, row["attempt"], "Test", "fails once", False, 0)
                conn.execute("UPDATE background_tasks SET run_at = now() WHERE id = %s", (task_id,))
    finally:
        runtime.claimer.drop_connection()
        runtime.pool.close()


async def test_cost_per_task_is_the_price_times_the_usage_over_retries_and_re_asks(
    asker_type: None, start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sql.execute("INSERT INTO model_prices (model, prompt_per_million, completion_per_million, "
                "cached_prompt_per_million) VALUES ('fake-model', 3, 15, 0.3)")
    api = await start_api()
    with FakeOpenAI() as fake:
        task_id = insert(sql, task_type="test-asker", payload="{}")
        fake.script(wrong_schema(), answer({"title": "one"}))  # attempt 1: a re-ask, then it fails
        await asyncio.to_thread(run_attempt, database_url, fake.base_url, task_id, "fail")
        fake.script(answer({"title": "two"}))  # attempt 2
        await asyncio.to_thread(run_attempt, database_url, fake.base_url, task_id, "complete")
    calls = sql.execute("SELECT attempt, prompt_tokens, completion_tokens, cached_prompt_tokens, cost_usd "
                        "FROM task_model_calls WHERE task_id = %s ORDER BY id", (task_id,)).fetchall()
    assert [c["attempt"] for c in calls] == [1, 1, 2]
    expected = [(Decimal(c["prompt_tokens"]) * 3 + Decimal(c["completion_tokens"]) * 15) / 1_000_000 for c in calls]
    assert all(c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 for c in calls)
    assert [c["cost_usd"] for c in calls] == expected
    async with httpx.AsyncClient(base_url=api.base, timeout=10) as client:
        detail = (await client.get(f"/api/tasks/{task_id}")).json()
        usage = (await client.get("/api/usage", params={"type": "test-asker"})).json()["usage"]
    assert detail["costUsd"] == pytest.approx(float(sum(expected)), rel=1e-9)
    assert [c["costUsd"] for c in detail["modelCalls"]] == pytest.approx([float(e) for e in expected])
    [row] = usage
    assert row["costUsd"] == pytest.approx(float(sum(expected))) and row["unpricedCalls"] == 0
    assert row["calls"] == 3 and row["tasks"] == 1

    # The CLI shows the same figures, for today (UTC).
    code = await asyncio.to_thread(cli.main, ["usage", "--day", "today", "--type", "test-asker", "--url", api.base])
    printed = capsys.readouterr().out
    assert code == 0 and f"${float(sum(expected)):,.4f}" in printed and "test-asker" in printed, printed


def test_prices_match_the_longest_prefix_and_count_cached_prompt_tokens(sql: psycopg.Connection[Any]) -> None:
    cost = one(sql, "SELECT model_call_cost('gpt-4o-mini-2024-07-18', 1000000, 400000, 1000000) AS c, "
                       "model_call_cost('gpt-4o-2024-08-06', 1000000, 0, 0) AS d, "
                       "model_call_cost('unknown-model', 10, 0, 10) AS e")
    # gpt-4o-mini, not gpt-4o: 600,000 x 0.15 + 400,000 x 0.075 + 1,000,000 x 0.60 per million
    assert cost["c"] == Decimal("0.72") and cost["d"] == Decimal("2.5") and cost["e"] is None


async def test_a_user_over_the_daily_spending_cap_makes_no_new_model_call(
    asker_type: None, database_url: str, sql: psycopg.Connection[Any]
) -> None:
    sql.execute("INSERT INTO model_prices (model, prompt_per_million, completion_per_million, "
                "cached_prompt_per_million) VALUES ('fake-model', 300, 1500, 30)")
    sql.execute("INSERT INTO user_limits (user_id, max_cost_usd_per_day) VALUES ('local', 0.001)")
    with FakeOpenAI() as fake:
        first = insert(sql, task_type="test-asker", payload="{}")
        await asyncio.to_thread(run_attempt, database_url, fake.base_url, first, "complete")  # under the cap
        assert len(fake.requests) == 1
        second = insert(sql, task_type="test-asker", payload="{}")
        with pytest.raises(SpendingCapReached, match=r"daily spending cap reached: user 'local'"):
            await asyncio.to_thread(run_attempt, database_url, fake.base_url, second, "complete")
        assert len(fake.requests) == 1, "a model call was made over the cap"
    spent = one(sql, "SELECT * FROM user_spending_today('local')")
    assert spent["cap_usd"] == Decimal("0.001") and spent["spent_usd"] > spent["cap_usd"]
