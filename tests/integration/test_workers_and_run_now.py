"""GET /api/workers (superusers: live, silent and recently stopped workers, what each runs now and serves) and
POST /api/schedules/{name}/run (one task of a schedule now, outside its cron), against real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.apiclient import Api, running_api
from tests.integration.test_workflows import insert

NOOP_TYPE = """[{"name": "noop", "description": "", "payload_schema": {"type": "object"}, "result_schema": null,
  "max_retries": 0, "time_limit_s": 60, "needs_project": false, "diagnostic": true, "handler": "noop"}]"""


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


def add_worker(sql: psycopg.Connection[Any], worker_id: str, concurrency: int, *, heartbeat_ago_s: float = 0,
               stopped_ago_s: float | None = None) -> None:
    sql.execute("INSERT INTO bgtasks_workers (worker_id, hostname, pid, concurrency, heartbeat_at, stopped_at) "
                "VALUES (%s, split_part(%s, ':', 1), split_part(%s, ':', 2)::int, %s, "
                "now() - make_interval(secs => %s), now() - make_interval(secs => %s))",
                (worker_id, worker_id, worker_id, concurrency, heartbeat_ago_s, stopped_ago_s))


async def test_workers_are_listed_live_first_with_what_they_run_and_serve(
        api: Api, sql: psycopg.Connection[Any]) -> None:
    add_worker(sql, "host-a:11", 4)
    add_worker(sql, "host-b:22", 2, heartbeat_ago_s=600)  # never stopped, no heartbeat: silent
    add_worker(sql, "host-c:33", 8, heartbeat_ago_s=700, stopped_ago_s=600)
    add_worker(sql, "host-d:44", 8, heartbeat_ago_s=9000, stopped_ago_s=9000)  # stopped long ago
    sql.execute("SELECT publish_task_types('host-a:11', %s)", (NOOP_TYPE,))
    running = insert(sql, "noop", 3)
    sql.execute("UPDATE background_tasks SET status = 'processing', worker_id = 'host-a:11', "
                "lease_expires_at = now() + interval '1 minute' WHERE id = ANY(%s)", (running,))

    r = await api.client.get("/api/workers", headers=await api.key("root", superuser=True))
    assert r.status_code == 200, r.text
    body = r.json()
    got = [(w["workerId"], w["state"], w["concurrency"], w["running"], w["taskTypes"]) for w in body["workers"]]
    assert got == [("host-a:11", "live", 4, 3, ["noop"]), ("host-b:22", "silent", 2, 0, []),
                   ("host-c:33", "stopped", 8, 0, [])]
    live = body["workers"][0]
    assert live["hostname"] == "host-a" and live["pid"] == 11 and live["stoppedAt"] is None
    assert 0 <= live["heartbeatAgeSeconds"] < 60 and body["workers"][1]["heartbeatAgeSeconds"] >= 600
    assert body["totals"] == {"live": 1, "silent": 1, "stopped": 1, "liveCapacity": 4, "running": 3}

    longer = await api.client.get("/api/workers", params={"stoppedWithin": "86400"},
                                  headers=await api.key("root2", superuser=True))
    assert [w["workerId"] for w in longer.json()["workers"]][-1] == "host-d:44"


@pytest.mark.parametrize(("params", "field"), [({"stoppedWithin": "-1"}, "stoppedWithin"),
                                               ({"limit": "x"}, "limit"), ({"state": "live"}, "state")])
async def test_bad_workers_parameters_are_422s_naming_them(api: Api, params: dict[str, str], field: str) -> None:
    r = await api.client.get("/api/workers", params=params, headers=await api.key("root", superuser=True))
    assert r.status_code == 422 and r.json()["field"] == field, r.text


async def test_only_a_superuser_lists_workers(api: Api) -> None:
    r = await api.client.get("/api/workers", headers=await api.key("alice"))
    assert r.status_code == 403 and "superuser" in r.json()["error"]


async def test_run_now_creates_one_task_of_the_schedule_and_leaves_its_cron_alone(
        api: Api, sql: psycopg.Connection[Any]) -> None:
    alice = {**await api.key("alice"), "Content-Type": "application/json"}
    made = await api.client.post("/api/schedules", headers=alice, json={
        "name": "nightly", "taskType": "noop", "cron": "0 3 * * *", "priority": 7, "label": "nightly run"})
    assert made.status_code == 201, made.text
    before = made.json()["schedule"]

    for body in (None, b"{}"):
        r = await api.client.post("/api/schedules/nightly/run", headers=alice, content=body)
        assert r.status_code == 201, r.text
        task = r.json()["task"]
        assert r.json()["schedule"] == "nightly"
        assert (task["taskType"], task["userId"], task["priority"], task["label"], task["status"]) == (
            "noop", "alice", 7, "nightly run", "pending")
    rows = sql.execute("SELECT schedule_name, scheduled_for FROM background_tasks WHERE user_id = 'alice'").fetchall()
    assert [(r["schedule_name"], r["scheduled_for"]) for r in rows] == [("nightly", None)] * 2
    after = (await api.client.get("/api/schedules/nightly", headers=alice)).json()["schedule"]
    assert (after["nextRunAt"], after["lastRunAt"]) == (before["nextRunAt"], before["lastRunAt"])

    missing = await api.client.post("/api/schedules/nope/run", headers=alice)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    extra = await api.client.post("/api/schedules/nightly/run", headers=alice, json={"when": "now"})
    assert extra.status_code == 422 and extra.json()["field"] == "when"
    bob = await api.client.post("/api/schedules/nightly/run", headers=await api.key("bob"))
    assert bob.status_code == 404  # another user's schedule is not there for bob

    sql.execute("UPDATE user_limits SET max_created_per_minute = 2 WHERE user_id = '*'")  # two created already
    over = await api.client.post("/api/schedules/nightly/run", headers=alice)
    assert over.status_code == 429, over.text
