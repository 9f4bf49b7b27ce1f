"""The last 500s and silent ends: NUL bytes anywhere a string reaches PostgreSQL, out-of-range dates in a
cursor, schedule names the table refuses, Last-Event-ID outside bigint; an error inside a stream ends it with
a final event that says why."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.apiclient import Api, running_api
from tests.integration.test_stream_credentials import new_key, start_api  # noqa: F401  (a fixture)


@pytest.fixture
async def api(database_url: str, tmp_path: Path):
    async with running_api(database_url, tmp_path) as a:
        yield a


def _json_4xx(r: Any, status: int | None = None) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["success"] is False and body["error"], body
    return dict(body)


@pytest.mark.parametrize("path", [
    "/api/subscribeToTask?taskId=task_%00x",
    "/api/tasks?q=a%00b",
    "/api/tasks?projectId=%00",
    "/api/tasks?userId=al%00ice",
    "/api/events?projectId=p%00",
    "/api/getBackgroundTasks?userId=%00",
    "/api/kiro/background-tasks?projectId=%00",
    "/api/schedules/nightly%00",
    "/api/tasks/task_%00",
    "/api/usage?userId=%00",
    "/api/analytics?userId=%00",
])
async def test_a_nul_byte_in_a_query_or_path_is_a_422_naming_it(api: Api, path: str) -> None:
    auth = await api.key("alice", superuser=True)
    body = _json_4xx(await api.client.get(path, headers=auth), 422)
    assert "NUL" in body["error"]
    expected = path.partition("?")[2].partition("=")[0] or "path"
    assert body["field"] == expected


async def test_a_nul_byte_in_a_json_body_is_refused_naming_the_field(api: Api) -> None:
    auth = await api.key("alice")
    r = await api.client.post("/api/tasks", headers=auth,
                              json={"taskType": "sleep", "payload": {"seconds": 0}, "label": "a\u0000b"})
    assert _json_4xx(r)["field"] == "label"
    r = await api.client.post("/api/schedules", headers=auth,
                              json={"name": "n\u0000", "taskType": "noop", "cron": "0 3 * * *"})
    assert _json_4xx(r)["field"] == "name"


def _cursor(sort: str, key: Any, task_id: str = "task_x") -> str:
    raw = json.dumps([sort, key, task_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("key", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                 "10000-01-01T00:00:00", "2024-13-01T00:00:00", 12, None])
async def test_a_cursor_with_an_out_of_range_date_is_a_422(api: Api, key: Any) -> None:
    auth = await api.key("alice")
    r = await api.client.get("/api/tasks", headers=auth, params={"cursor": _cursor("-createdAt", key)})
    assert _json_4xx(r, 422)["field"] == "cursor"


@pytest.mark.parametrize("sort", ["priority", "-priority"])
@pytest.mark.parametrize("key", [2**31, -(2**31) - 1, 2**63, "12", 1.5, True])
async def test_a_priority_cursor_outside_integer_is_a_422(api: Api, sort: str, key: Any) -> None:
    auth = await api.key("alice")
    r = await api.client.get("/api/tasks", headers=auth, params={"sort": sort, "cursor": _cursor(sort, key)})
    assert _json_4xx(r, 422)["field"] == "cursor"
    edge = await api.client.get("/api/tasks", headers=auth, params={"sort": sort, "cursor": _cursor(sort, 2**31 - 1)})
    assert edge.status_code == 200, edge.text


async def test_a_cursor_at_the_edges_of_the_calendar_still_pages(api: Api) -> None:
    auth = await api.key("alice")
    for key in ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00"):
        r = await api.client.get("/api/tasks", headers=auth, params={"cursor": _cursor("-createdAt", key)})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("name", ["has space", "é", "x" * 101, "a/b", ""])
async def test_a_schedule_name_the_table_refuses_is_a_422(api: Api, name: str) -> None:
    auth = await api.key("alice")
    r = await api.client.post("/api/schedules", headers=auth,
                              json={"name": name, "taskType": "noop", "cron": "0 3 * * *"})
    assert _json_4xx(r, 422)["field"] == "name"


async def test_a_cron_that_is_never_due_is_a_422_on_create_and_on_change(api: Api) -> None:
    auth = await api.key("alice")
    r = await api.client.post("/api/schedules", headers=auth,
                              json={"name": "feb30", "taskType": "noop", "cron": "0 0 30 2 *"})
    assert "never due" in _json_4xx(r, 422)["error"]
    r = await api.client.post("/api/schedules", headers=auth,
                              json={"name": "nightly", "taskType": "noop", "cron": "0 3 * * *"})
    assert r.status_code == 201, r.text
    r = await api.client.patch("/api/schedules/nightly", headers=auth, json={"cron": "0 0 31 4 *"})
    assert _json_4xx(r, 422)["field"] == "cron"
    assert (await api.client.get("/api/schedules/nightly", headers=auth)).json()["schedule"]["cron"] == "0 3 * * *"


@pytest.mark.parametrize("value", ["9223372036854775808", "-1", "99999999999999999999999", "1_000", "１２",
                                   "12abc", "0x10"])
async def test_a_last_event_id_outside_bigint_is_a_400(api: Api, value: str) -> None:
    auth = await api.key("alice")
    r = await api.client.get("/api/events", headers={k.encode(): v.encode() for k, v in {**auth, "Last-Event-ID": value}.items()})
    assert _json_4xx(r, 400)["field"] == "Last-Event-ID"
    r = await api.client.get("/api/events", headers=auth, params={"lastEventId": value})
    assert _json_4xx(r, 400)["field"] == "Last-Event-ID"


async def test_an_error_inside_a_stream_ends_it_with_an_event_saying_why(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    auth = await api.key("alice")
    # A real fault mid-stream: the replay's query finds no table (an operator renamed it meanwhile). Renamed
    # from the event loop's own pool: a blocking rename could wait on a lock the (then frozen) hub holds.
    await api.pool.execute("ALTER TABLE background_tasks RENAME TO background_tasks_moved")
    try:
        async with api.client.stream("GET", "/api/events", headers={**auth, "Last-Event-ID": "0"}) as resp:
            assert resp.status_code == 200
            text = (await resp.aread()).decode()
    finally:
        await api.pool.execute("ALTER TABLE background_tasks_moved RENAME TO background_tasks")
    frames = [f for f in text.split("\n\n") if f.startswith("event:")]
    assert frames and frames[-1].startswith("event: dropped"), text
    data = json.loads(frames[-1].split("data: ", 1)[1])
    assert "server error" in data["reason"] and data["lastEventId"] == 0 and data["code"] == "server_error"
    assert any("stream" in r.getMessage() and r.exc_info for r in caplog.records), "the error was not logged"


async def test_schedule_names_are_per_user_and_reveal_nothing_of_others(api: Api,
                                                                        database_url: str) -> None:
    from bgtasks import scheduler
    from bgtasks.db import sync_connect

    alice, bob = await api.key("alice"), await api.key("bob")
    body = {"name": "nightly", "taskType": "noop", "cron": "* * * * *"}  # per minute: the default shortest period
    assert (await api.client.post("/api/schedules", headers=alice, json=body)).status_code == 201
    r = await api.client.post("/api/schedules", headers=bob, json=body)
    assert r.status_code == 201 and r.json()["schedule"]["userId"] == "bob"  # alice's name told bob nothing
    again = await api.client.post("/api/schedules", headers=alice, json=body)
    assert again.status_code == 422 and "exists already" in again.json()["error"]  # her own
    assert (await api.client.get("/api/schedules/nightly", headers=alice)).json()["schedule"]["userId"] == "alice"
    root = await api.key("root", superuser=True)
    both = await api.client.get("/api/schedules/nightly", headers=root)
    assert both.status_code == 422 and both.json()["field"] == "userId"
    r = await api.client.get("/api/schedules/nightly", headers=root, params={"userId": "bob"})
    assert r.status_code == 200 and r.json()["schedule"]["userId"] == "bob"
    # Each owner's schedule creates its own task for the same due time.
    with sync_connect(database_url) as sql:
        scheduler.run_due_schedules(sql)  # sets next_run_at
        sql.execute("UPDATE task_schedules SET next_run_at = date_trunc('second', now()) - interval '1 s'")
        scheduler.run_due_schedules(sql, grace_s=5)
        made = {r["user_id"]: r["n"] for r in sql.execute(
            "SELECT user_id, count(*) AS n FROM background_tasks WHERE schedule_name = 'nightly' GROUP BY 1")}
        assert set(made) == {"alice", "bob"} and min(made.values()) >= 1, made  # neither skipped for the other
    assert (await api.client.delete("/api/schedules/nightly", headers=bob)).status_code == 200
    assert (await api.client.get("/api/schedules/nightly", headers=alice)).status_code == 200
    assert (await api.client.get("/api/schedules/nightly", headers=bob)).status_code == 404
    assert (await api.client.get("/api/schedules/nightly", headers=root)).json()["schedule"]["userId"] == "alice"


async def test_a_user_naming_another_owner_for_a_schedule_is_refused_not_given_her_own(api: Api) -> None:
    alice = await api.key("alice")
    body = {"name": "nightly", "taskType": "noop", "cron": "0 3 * * *"}
    r = await api.client.post("/api/schedules", headers=alice, json={**body, "userId": "bob"})
    assert _json_4xx(r, 403)["code"] == "forbidden"
    assert (await api.client.get("/api/schedules", headers=alice)).json()["schedules"] == []
    r = await api.client.post("/api/schedules", headers=alice, json={**body, "userId": "ALICE"})  # herself
    assert r.status_code == 201 and r.json()["schedule"]["userId"] == "alice", r.text
    root = await api.key("root", superuser=True)
    r = await api.client.post("/api/schedules", headers=root, json={**body, "userId": "bob"})
    assert r.status_code == 201 and r.json()["schedule"]["userId"] == "bob", r.text


async def test_an_error_inside_a_websocket_stream_ends_it_with_a_dropped_message(start_api: Any,  # noqa: F811
                                                                                 database_url: str) -> None:
    import asyncio

    import websockets

    from bgtasks import db

    api = await start_api()
    key, _ = await new_key(database_url, "alice")
    conn = await db.connect(database_url)
    await conn.execute("ALTER TABLE background_tasks RENAME TO background_tasks_moved")
    messages: list[dict[str, Any]] = []
    try:
        async with websockets.connect(f"ws://127.0.0.1:{api.port}/api/ws?lastEventId=0",
                                      additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    messages.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    finally:
        await conn.execute("ALTER TABLE background_tasks_moved RENAME TO background_tasks")
        await conn.close()
    assert messages and messages[-1]["event"] == "dropped", messages
    assert messages[-1]["data"]["code"] == "server_error" and "server error" in messages[-1]["data"]["reason"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


def test_the_schedules_cli_names_the_owner_of_a_shared_name(database_url: str,
                                                           sql: Any) -> None:
    import subprocess

    from tests.processes import BGTASKS

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BGTASKS_")}
        return subprocess.run([*BGTASKS, "schedules", *args], env={**env, "DATABASE_URL": database_url},
                              capture_output=True, text=True, timeout=60)

    sql.execute("INSERT INTO task_schedules (name, task_type, user_id, cron) VALUES "
                "('nightly', 'noop', 'alice', '0 3 * * *'), ('nightly', 'noop', 'bob', '0 3 * * *')")
    shared = cli("rm", "nightly")
    assert shared.returncode != 0 and "--user" in shared.stderr and "Traceback" not in shared.stderr, shared
    assert cli("rm", "nightly", "--user", "bob").returncode == 0
    assert cli("disable", "nightly").returncode == 0  # alice's is the only one left
    bad = cli("add", "has space", "noop", "0 3 * * *", "--user", "u")
    assert bad.returncode != 0 and "name" in bad.stderr and "Traceback" not in bad.stderr, bad
