"""`GET /api/analytics?bucket=`: tasks finished per minute or hour (the dashboard's throughput and failures
chart), every bucket of the period present, a user's own only, and 422s naming the bad parameter."""

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


def finish(sql: psycopg.Connection[Any], ids: list[str], status: str, at: str) -> None:
    sql.execute("UPDATE background_tasks SET status = 'processing' WHERE id = ANY(%s)", (ids,))
    sql.execute("UPDATE background_tasks SET status = %s, completed_at = %s::timestamptz WHERE id = ANY(%s)",
                (status, at, ids))


async def test_series_counts_tasks_finished_in_each_minute_with_empty_minutes_as_zeros(
        api: Api, sql: psycopg.Connection[Any]) -> None:
    finish(sql, insert(sql, "noop", 3, user_id="ann"), "completed", "2030-01-01T10:00:10Z")
    finish(sql, insert(sql, "noop", 1, user_id="bob"), "completed", "2030-01-01T10:02:59Z")
    finish(sql, insert(sql, "flaky", 2, user_id="ann"), "error", "2030-01-01T10:02:00Z")
    finish(sql, insert(sql, "noop", 1, user_id="ann"), "cancelled", "2030-01-01T10:04:00Z")  # past until
    window = {"since": "2030-01-01T10:00:00Z", "until": "2030-01-01T10:04:00Z", "bucket": "minute"}

    admin = await api.key("root", superuser=True)
    r = await api.client.get("/api/analytics", params=window, headers=admin)
    assert r.status_code == 200, r.text
    series = r.json()["series"]
    assert series["bucket"] == "minute"
    assert [(p["start"][11:16], p["completed"], p["failed"], p["cancelled"]) for p in series["points"]] == [
        ("10:00", 3, 0, 0), ("10:01", 0, 0, 0), ("10:02", 1, 2, 0), ("10:03", 0, 0, 0)]

    ann = await api.key("ann")
    mine = (await api.client.get("/api/analytics", params=window, headers=ann)).json()["series"]["points"]
    assert [(p["completed"], p["failed"]) for p in mine] == [(3, 0), (0, 0), (0, 2), (0, 0)]

    hourly = await api.client.get("/api/analytics", params={**window, "bucket": "hour"}, headers=admin)
    assert [(p["completed"], p["failed"]) for p in hourly.json()["series"]["points"]] == [(4, 2)]
    plain = await api.client.get("/api/analytics", params={"since": window["since"]}, headers=admin)
    assert "series" not in plain.json()


@pytest.mark.parametrize(("params", "message"), [
    ({"bucket": "second"}, "minute or hour"),
    ({"bucket": "minute", "since": "2030-01-01T00:00:00Z", "until": "2030-01-03T00:00:00Z"}, "at most 1500"),
])
async def test_a_bad_bucket_is_a_422_naming_it(api: Api, params: dict[str, str], message: str) -> None:
    r = await api.client.get("/api/analytics", params=params, headers=await api.key("ann"))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "bucket" and message in r.json()["error"]
