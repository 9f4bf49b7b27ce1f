"""Cost in `GET /api/analytics` (issue 18): per user or type, what the period's model calls cost (task_model_calls'
cost_usd, the price table times the usage) in all and per UTC day, unpriced calls counted apart; a user sees their
own only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.apiclient import Api, running_api
from tests.integration.test_workflows import insert


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


def call(sql: psycopg.Connection[Any], task_id: str, user: str, task_type: str, at: str, cost: float | None) -> None:
    sql.execute("INSERT INTO task_model_calls (task_id, user_id, task_type, attempt, model, prompt_tokens, "
                "completion_tokens, total_tokens, duration_ms, created_at, cost_usd) "
                "VALUES (%s, %s, %s, 1, 'm', 10, 5, 15, 100, %s::timestamptz, %s)", (task_id, user, task_type, at, cost))


async def test_analytics_report_cost_per_group_and_utc_day(api: Api, sql: psycopg.Connection[Any]) -> None:
    [a] = insert(sql, "generation", 1, user_id="ann")
    [b] = insert(sql, "docs", 1, user_id="bob")
    call(sql, a, "ann", "generation", "2030-01-01T23:30:00Z", 0.25)
    call(sql, a, "ann", "generation", "2030-01-02T00:30:00Z", 0.5)  # a retry after midnight UTC: the next day
    call(sql, a, "ann", "generation", "2030-01-02T01:00:00Z", None)  # a model without a price
    call(sql, b, "bob", "docs", "2030-01-01T12:00:00Z", 1.0)
    call(sql, b, "bob", "docs", "2029-12-31T12:00:00Z", 9.0)  # before the period
    window = {"since": "2030-01-01T00:00:00Z", "until": "2030-01-03T00:00:00Z"}

    admin = await api.key("root", superuser=True)
    r = await api.client.get("/api/analytics", params={**window, "groupBy": "user"}, headers=admin)
    assert r.status_code == 200, r.text
    groups = {g["key"]: g for g in r.json()["groups"]}
    assert groups["ann"]["costUsd"] == pytest.approx(0.75) and groups["ann"]["unpricedCalls"] == 1
    assert groups["ann"]["costByDay"] == [
        {"day": "2030-01-01", "costUsd": pytest.approx(0.25), "unpricedCalls": 0},
        {"day": "2030-01-02", "costUsd": pytest.approx(0.5), "unpricedCalls": 1}]
    assert groups["bob"]["costUsd"] == pytest.approx(1.0)
    assert groups["bob"]["costByDay"] == [{"day": "2030-01-01", "costUsd": pytest.approx(1.0), "unpricedCalls": 0}]

    by_type = (await api.client.get("/api/analytics", params={**window, "groupBy": "type"}, headers=admin)).json()
    assert {g["key"]: g["costUsd"] for g in by_type["groups"]} == {"docs": pytest.approx(1.0),
                                                                  "generation": pytest.approx(0.75)}

    ann = await api.key("ann")
    mine = (await api.client.get("/api/analytics", params={**window, "groupBy": "type"}, headers=ann)).json()
    assert [(g["key"], g["costUsd"]) for g in mine["groups"]] == [("generation", pytest.approx(0.75))]
