"""Usage totals per user and task type (service/store/usage.py), as the API reads them: from
task_model_calls, which outlives the tasks, never from a scan of background_tasks."""

from __future__ import annotations

from typing import Any

import psycopg

from bgtasks.store import usage


def record(sql: psycopg.Connection[Any], user: str, task_type: str, task_id: str, prompt: int, completion: int,
           ms: int) -> None:
    sql.execute("INSERT INTO task_model_calls (task_id, user_id, task_type, attempt, model, prompt_tokens, "
                "completion_tokens, total_tokens, duration_ms) VALUES (%s, %s, %s, 1, 'm', %s, %s, %s, %s)",
                (task_id, user, task_type, prompt, completion, prompt + completion, ms))


async def test_usage_totals_add_up_per_user_and_type(sql: psycopg.Connection[Any], pool: Any) -> None:
    record(sql, "anna", "docs", "t1", 100, 10, 50)
    record(sql, "anna", "docs", "t1", 200, 20, 70)  # a re-ask within the same task
    record(sql, "anna", "generation", "t2", 5, 1, 9)
    record(sql, "bert", "docs", "t3", 7, 3, 11)

    everyone = [dict(r) for r in await usage.usage_totals(pool, None)]
    assert [(r["user_id"], r["task_type"], r["calls"], r["tasks"]) for r in everyone] == [
        ("anna", "docs", 2, 1), ("anna", "generation", 1, 1), ("bert", "docs", 1, 1)]
    assert (everyone[0]["prompt_tokens"], everyone[0]["completion_tokens"], everyone[0]["total_tokens"],
            everyone[0]["duration_ms"]) == (300, 30, 330, 120)

    annas_docs = await usage.usage_totals(pool, "anna", ["docs"])
    assert [(r["task_type"], r["prompt_tokens"]) for r in annas_docs] == [("docs", 300)]
    calls = await usage.task_model_calls(pool, "t1")
    assert [c["prompt_tokens"] for c in calls] == [100, 200]
