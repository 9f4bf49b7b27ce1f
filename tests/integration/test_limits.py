"""Default caps and user_limits: the default creation rate (429 with Retry-After), schedules per user and their
shortest period (409, 422), tasks of schedules counted against their owner's rate, and superusers changing
every limit per user over HTTP and with `bgtasks limits`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bgtasks import db, scheduler
from tests.integration.apiclient import Api, running_api
from tests.rows import one


@pytest.fixture
async def api(database_url: str, tmp_path: Path):
    async with running_api(database_url, tmp_path) as a:
        yield a


def _batch(n: int) -> dict[str, Any]:
    return {"tasks": [{"taskType": "noop"} for _ in range(n)]}


async def test_a_creation_burst_above_the_default_rate_gets_429_with_retry_after(api: Api) -> None:
    ann = await api.key("ann")
    [default] = (await api.client.get("/api/limits", headers=ann)).json()["limits"]
    rate = default["limits"]["maxCreatedPerMinute"]
    assert rate == 1000 and default["own"] is None
    made = await api.client.post("/api/tasks/batch", headers=ann, json=_batch(rate))
    assert made.status_code == 201, made.text
    over = await api.client.post("/api/tasks", headers=ann, json={"taskType": "noop"})
    assert over.status_code == 429
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    body = over.json()
    assert body["success"] is False and body["code"] == "rate_limited"
    assert "limit 1000" in body["error"], body
    # Another user is not affected by ann's burst.
    bob = await api.client.post("/api/tasks", headers=await api.key("bob"), json={"taskType": "noop"})
    assert bob.status_code == 201, bob.text


async def test_a_schedule_below_the_minimum_period_gets_422_naming_the_minimum(api: Api) -> None:
    ann = await api.key("ann")
    every_second = {"name": "s1", "taskType": "noop", "cron": "* * * * * *"}
    r = await api.client.post("/api/schedules", headers=ann, json=every_second)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "cron" and "60 s" in r.json()["error"], r.json()
    # Twice an hour, but two minutes apart at :00 and :02: the shortest gap counts, not the average.
    uneven = {"name": "s2", "taskType": "noop", "cron": "0,1 * * * *"}
    assert (await api.client.post("/api/schedules", headers=ann, json=uneven)).status_code == 201
    made = await api.client.post(
        "/api/schedules", headers=ann, json={"name": "s3", "taskType": "noop", "cron": "*/5 * * * *"}
    )
    assert made.status_code == 201, made.text
    patched = await api.client.patch("/api/schedules/s3", headers=ann, json={"cron": "*/30 * * * * *"})
    assert patched.status_code == 422 and patched.json()["field"] == "cron"

    root = await api.key("root", superuser=True)
    lowered = await api.client.put("/api/limits/ann", headers=root, json={"minSchedulePeriodSeconds": 1})
    assert lowered.status_code == 200, lowered.text
    assert lowered.json()["limits"]["minSchedulePeriodSeconds"] == 1
    assert (await api.client.post("/api/schedules", headers=ann, json=every_second)).status_code == 201


async def test_schedules_per_user_are_capped_and_superusers_raise_the_cap(api: Api) -> None:
    root = await api.key("root", superuser=True)
    r = await api.client.put("/api/limits/*", headers=root, json={"maxSchedules": 2})
    assert r.status_code == 200 and r.json()["limits"]["maxSchedules"] == 2, r.text
    ann = await api.key("ann")
    for name in ("a", "b"):
        made = await api.client.post(
            "/api/schedules", headers=ann, json={"name": name, "taskType": "noop", "cron": "0 3 * * *"}
        )
        assert made.status_code == 201, made.text
    third = await api.client.post(
        "/api/schedules", headers=ann, json={"name": "c", "taskType": "noop", "cron": "0 3 * * *"}
    )
    assert third.status_code == 409, third.text
    assert third.json()["code"] == "limit_reached" and "max_schedules" in third.json()["error"]
    # A superuser creating one for ann counts against ann too.
    for_ann = await api.client.post(
        "/api/schedules",
        headers=root,
        json={"name": "d", "taskType": "noop", "cron": "0 3 * * *", "userId": "ann"},
    )
    assert for_ann.status_code == 409
    assert (
        await api.client.put("/api/limits/ann", headers=root, json={"maxSchedules": 3})
    ).status_code == 200
    again = await api.client.post(
        "/api/schedules", headers=ann, json={"name": "c", "taskType": "noop", "cron": "0 3 * * *"}
    )
    assert again.status_code == 201, again.text


async def test_limits_api_rules(api: Api) -> None:
    ann, root = await api.key("ann"), await api.key("root", superuser=True)
    assert (await api.client.get("/api/limits/bob", headers=ann)).status_code == 404
    mine = await api.client.get("/api/limits/ann", headers=ann)
    assert mine.status_code == 200 and mine.json()["limits"]["maxSchedules"] == 20
    assert (await api.client.put("/api/limits/ann", headers=ann, json={"maxRunning": 9})).status_code == 403
    for bad in ({"maxRunning": -1}, {"maxRunning": "9"}, {"nope": 1}, {}, {"minSchedulePeriodSeconds": 0}):
        r = await api.client.put("/api/limits/ann", headers=root, json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["success"] is False
    set_one = await api.client.put("/api/limits/ann", headers=root, json={"maxRunning": 3})
    assert set_one.json()["own"] == {
        "maxRunning": 3,
        "maxCreatedPerMinute": None,
        "maxSchedules": None,
        "minSchedulePeriodSeconds": None,
        "maxStreams": None,
    }
    # The open-stream cap (the API's BGTASKS_MAX_STREAMS_PER_USER when unset) is one of them too.
    streams = await api.client.put("/api/limits/ann", headers=root, json={"maxStreams": 5})
    assert streams.json()["limits"]["maxStreams"] == 5 and streams.json()["own"]["maxRunning"] == 3
    # The other limits still come from the defaults, and follow them when they change.
    assert set_one.json()["limits"]["maxCreatedPerMinute"] == 1000
    await api.client.put("/api/limits/*", headers=root, json={"maxCreatedPerMinute": 50})
    assert (await api.client.get("/api/limits/ann", headers=ann)).json()["limits"][
        "maxCreatedPerMinute"
    ] == 50
    every = (await api.client.get("/api/limits", headers=root)).json()["limits"]
    assert [x["userId"] for x in every] == ["*", "ann"]
    assert (await api.client.delete("/api/limits/*", headers=root)).status_code == 422
    assert (await api.client.delete("/api/limits/ann", headers=root)).json()["own"] is None
    assert (await api.client.delete("/api/limits/ann", headers=root)).status_code == 404


def test_tasks_of_schedules_count_against_their_owners_rate(
    sql: psycopg.Connection[Any], database_url: str
) -> None:
    sql.execute("INSERT INTO user_limits (user_id, max_created_per_minute) VALUES ('ann', 3)")
    sql.execute(
        "INSERT INTO background_tasks (task_type, user_id) SELECT 'noop', 'ann' FROM generate_series(1, 3)"
    )
    sql.execute(
        # catch_up once: a tick that comes late on a busy machine still has a due time to create a task for
        "INSERT INTO task_schedules (name, task_type, user_id, cron, catch_up) VALUES ('tick', 'noop', 'ann', "
        "'* * * * * *', 'once')"
    )
    due = (
        "UPDATE task_schedules SET next_run_at = clock_timestamp() - interval '1 second' WHERE name = 'tick'"
    )
    with db.sync_connect(database_url) as conn:
        scheduler.run_due_schedules(conn)  # the first tick only computes next_run_at
        sql.execute(due)
        assert scheduler.run_due_schedules(conn) == 0
        row = one(sql, "SELECT enabled, last_error, next_run_at > now() AS moved_on FROM task_schedules")
        assert row["enabled"] and row["moved_on"], row
        assert "rate limit" in row["last_error"], row
        assert one(sql, "SELECT count(*) AS n FROM background_tasks")["n"] == 3
        sql.execute("UPDATE user_limits SET max_created_per_minute = 10 WHERE user_id = 'ann'")
        sql.execute(due)
        assert scheduler.run_due_schedules(conn) >= 1  # the due time a second ago, and maybe now's
        row = one(sql, "SELECT last_error FROM task_schedules")
        assert row["last_error"] is None


def test_limits_command_sets_shows_and_resets(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGTASKS_")}
    env["DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bgtasks.cli", "limits", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = run("set", "ann", "--max-created-per-minute", "5", "--min-schedule-period", "10", "--json")
    assert done.returncode == 0, done.stderr
    [shown] = json.loads(done.stdout)
    assert (shown["max_created_per_minute"], shown["min_schedule_period_s"], shown["max_schedules"]) == (
        5,
        10,
        20,
    )
    assert run("set", "ann", "--max-running", "-3").returncode == 2
    assert run("set", "ann").returncode == 2
    listed = run("ls")
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith("*"), listed.stdout
    assert run("set", "ann", "--max-created-per-minute", "default", "--json").returncode == 0
    [back] = json.loads(run("show", "ann", "--json").stdout)
    assert back["max_created_per_minute"] == 1000
    assert run("reset", "ann").returncode == 0
    assert run("reset", "ann").returncode == 3
    assert run("reset", "*").returncode == 2


def test_the_creation_window_is_kept_in_per_second_counters_that_stay_small(sql: psycopg.Connection[Any]) -> None:
    # Every writer counts (a psql INSERT too), by the second it created in; the check sums those counters
    # instead of counting the user's tasks of the last minute.
    sql.execute("INSERT INTO user_limits (user_id, max_created_per_minute) VALUES ('ann', 5)")
    sql.execute("INSERT INTO background_tasks (task_type, user_id) SELECT 'noop', 'ann' FROM generate_series(1, 3)")
    assert one(sql, "SELECT sum(n) AS n FROM task_creation_counts WHERE user_id = 'ann'")["n"] == 3
    with pytest.raises(psycopg.Error, match="rate limit"):
        sql.execute("SELECT check_creation_rate('ann', 3)")
    # Rows created with an old created_at (an import) are outside every window: not counted.
    sql.execute("INSERT INTO background_tasks (task_type, user_id, created_at) "
                "SELECT 'noop', 'ann', now() - interval '1 day' FROM generate_series(1, 1000)")
    assert one(sql, "SELECT sum(n) AS n FROM task_creation_counts WHERE user_id = 'ann'")["n"] == 3
    # Seconds that left the window are dropped as the user creates more: the table stays about a minute long.
    sql.execute("UPDATE task_creation_counts SET second = second - interval '61 seconds'")
    sql.execute("SELECT check_creation_rate('ann', 5)")  # the three aged out
    sql.execute("INSERT INTO background_tasks (task_type, user_id) VALUES ('noop', 'ann')")
    assert one(sql, "SELECT count(*) AS rows, sum(n) AS n FROM task_creation_counts WHERE user_id = 'ann'") == {
        "rows": 1, "n": 1}
    # TRUNCATE forgets the window with the tasks.
    sql.execute("TRUNCATE background_tasks CASCADE")
    assert one(sql, "SELECT count(*) AS n FROM task_creation_counts")["n"] == 0
