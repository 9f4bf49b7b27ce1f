"""The last 500s and silent ends: NUL bytes anywhere a string reaches PostgreSQL, out-of-range dates in a
cursor, schedule names the table refuses, Last-Event-ID outside bigint; an error inside a stream ends it with
a final event that says why."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.apiclient import Api, running_api


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


@pytest.mark.parametrize("value", ["9223372036854775808", "-1", "99999999999999999999999", "1_000", "１２",
                                   "12abc", "0x10"])
async def test_a_last_event_id_outside_bigint_is_a_400(api: Api, value: str) -> None:
    auth = await api.key("alice")
    r = await api.client.get("/api/events", headers={**auth, "Last-Event-ID": value.encode()})
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
