"""SSE and WebSocket endpoints over real HTTP (uvicorn in this process) and a real PostgreSQL: seed two's
subscribeToTask, the all-tasks stream with Last-Event-ID resume, the WebSocket twin, and prompt release."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
import websockets
from starlette.requests import HTTPConnection

from bgtasks.api import streams as streams_module
from bgtasks.api.app import create_app
from bgtasks.api.auth import Principal
from bgtasks.embedded import free_port
from bgtasks.settings import load_settings

Sse = dict[str, Any]


class Api:
    def __init__(self, server: uvicorn.Server, app: Any, port: int) -> None:
        self.server, self.app, self.port = server, app, port
        self.base = f"http://127.0.0.1:{port}"

    @property
    def hub(self) -> Any:
        return self.app.state.hub


@pytest.fixture
async def start_api(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    """Start the app under uvicorn on a free port; `x-test-user: NAME` acts as a non-superuser NAME."""
    original = streams_module.authenticate_reader

    async def authenticate(conn: HTTPConnection) -> Any:
        user = conn.headers.get("x-test-user")
        if user:
            return Principal(user, False)
        return await original(conn)

    monkeypatch.setattr(streams_module, "authenticate_reader", authenticate)
    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> Api:
        settings = load_settings(
            database_url=database_url, bgtasks_dev=True, bgtasks_host="127.0.0.1", **overrides
        )
        app = create_app(settings)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                lifespan="on",
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        task = asyncio.create_task(server.serve())
        running.append((server, task))
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.025)
        assert server.started, "uvicorn did not start within 5s"
        api = Api(server, app, port)
        await api.hub.wait_until(lambda: api.hub.connected, 10, "hub connected")
        return api

    yield start
    for server, task in running:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def read_events(response: httpx.Response) -> AsyncIterator[Sse]:
    """SSE messages as dicts (event, id, data parsed as JSON, comment for `:` lines)."""
    msg: Sse = {}
    async for line in response.aiter_lines():
        if line == "":
            if msg:
                yield msg
            msg = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                msg["data"] = json.loads(value)
            elif field == "id":
                msg["id"] = int(value)
            else:
                msg[field] = value
    if msg:
        yield msg


async def next_message(it: AsyncIterator[Sse], within_s: float = 5.0, skip_comments: bool = True) -> Sse:
    async def go() -> Sse:
        while True:
            m = await anext(it)
            if skip_comments and "comment" in m:
                continue
            if "retry" in m and len(m) == 1:
                continue
            return m

    return await asyncio.wait_for(go(), within_s)


def insert(sql: psycopg.Connection[Any], user: str = "local", task_type: str = "noop", **cols: Any) -> str:
    names = ["task_type", "user_id", *cols]
    row = sql.execute(
        f"INSERT INTO background_tasks ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(names))}) RETURNING id",
        (task_type, user, *cols.values()),
    ).fetchone()
    assert row
    return str(row["id"])


# ---------------------------------------------------------------- seed two: subscribeToTask


async def test_subscribe_to_task_sends_current_state_updates_and_complete_then_closes(
    start_api: Callable[..., Awaitable[Api]], sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    tid = insert(sql, description="queued")
    async with (
        httpx.AsyncClient(base_url=api.base, timeout=10) as client,
        client.stream("GET", "/api/subscribeToTask", params={"taskId": tid}) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"].startswith("no-cache")
        assert resp.headers["x-accel-buffering"] == "no"
        it = read_events(resp)
        first = await next_message(it)
        assert "event" not in first  # seed two's client reads onmessage: no event names
        assert first["data"]["type"] == "update"
        assert (
            first["data"]["task"]["status"] == "pending" and first["data"]["task"]["description"] == "queued"
        )
        sql.execute(
            "UPDATE background_tasks SET status = 'processing', progress = 30, "
            "description = 'Generating with OpenAI...' WHERE id = %s",
            (tid,),
        )
        upd = await next_message(it)
        assert upd["data"] == {"type": "update", "task": upd["data"]["task"]}
        assert (upd["data"]["task"]["progress"], upd["data"]["task"]["status"]) == (30, "processing")
        assert upd["id"] > first["id"]
        sql.execute(
            "UPDATE background_tasks SET status = 'completed', result_data = %s WHERE id = %s",
            (json.dumps({"questionsGenerated": 10}), tid),
        )
        done = await next_message(it)
        assert done["data"]["type"] == "complete"
        assert done["data"]["task"]["result"] == {"questionsGenerated": 10}
        assert done["data"]["task"]["progress"] == 100
        with pytest.raises(StopAsyncIteration):
            await next_message(it)  # the server closed the stream
    await api.hub.wait_until(lambda: api.hub.subscriber_count == 0, 5, "subscriber released")


async def test_subscribe_to_finished_task_sends_terminal_message_at_once(
    start_api: Callable[..., Awaitable[Api]], sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    failed = insert(sql)
    sql.execute(
        "UPDATE background_tasks SET status = 'error', error_message = "
        "'API key not configured for provider: openai' WHERE id = %s",
        (failed,),
    )
    cancelled = insert(sql)
    sql.execute("SELECT cancel_task(%s, 'cancelled by operator')", (cancelled,))
    async with httpx.AsyncClient(base_url=api.base, timeout=10) as client:
        r = await client.get("/api/subscribeToTask", params={"taskId": failed})
        [msg] = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        assert msg["type"] == "error" and msg["error"] == "API key not configured for provider: openai"
        assert msg["task"]["status"] == "failed"  # seed two's name for error
        r = await client.get("/api/subscribeToTask", params={"taskId": cancelled})
        [msg] = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        assert msg["type"] == "error" and msg["error"] == "cancelled: cancelled by operator"
        assert msg["task"]["status"] == "cancelled"


async def test_another_users_task_looks_exactly_like_a_missing_one(
    start_api: Callable[..., Awaitable[Api]], sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    tid = insert(sql, user="alice")
    async with httpx.AsyncClient(base_url=api.base, timeout=10) as client:
        theirs = await client.get(
            "/api/subscribeToTask", params={"taskId": tid}, headers={"x-test-user": "bob"}
        )
        missing = await client.get(
            "/api/subscribeToTask", params={"taskId": "task_nope"}, headers={"x-test-user": "bob"}
        )
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"] == f"task {tid!r} not found"
    assert missing.json()["error"] == "task 'task_nope' not found"
    assert theirs.json() | {"error": ""} == missing.json() | {"error": ""}
    assert api.hub.subscriber_count == 0


async def test_subscription_times_out_with_seed_twos_message_and_sends_keepalives(
    start_api: Callable[..., Awaitable[Api]], sql: psycopg.Connection[Any]
) -> None:
    api = await start_api(bgtasks_sse_timeout_s=1.0, bgtasks_sse_keepalive_s=0.3)
    tid = insert(sql)
    async with (
        httpx.AsyncClient(base_url=api.base, timeout=10) as client,
        client.stream("GET", "/api/subscribeToTask", params={"taskId": tid}) as resp,
    ):
        seen = [m async for m in read_events(resp)]
    assert seen[0]["data"]["type"] == "update"
    assert {"comment": "keepalive"} in seen
    assert seen[-1]["data"] == {"type": "timeout", "error": "Task monitoring timeout"}
    await api.hub.wait_until(lambda: api.hub.subscriber_count == 0, 5, "subscriber released")


# ---------------------------------------------------------------- every task: /api/events and /api/ws


async def test_events_stream_filters_by_owner_and_resumes_from_last_event_id(
    start_api: Callable[..., Awaitable[Api]], sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    async with httpx.AsyncClient(base_url=api.base, timeout=10) as client:
        async with client.stream("GET", "/api/events", headers={"x-test-user": "alice"}) as resp:
            it = read_events(resp)
            ready = await next_message(it)
            assert ready["event"] == "ready" and ready["data"] == {"lastEventId": ready["id"]}
            insert(sql, user="bob")
            mine = insert(sql, user="alice", label="mine")
            msg = await next_message(it)
            assert msg["event"] == "task" and msg["data"]["id"] == mine and msg["data"]["label"] == "mine"
            last_id = msg["id"]
        # Disconnected: these changes happen while nobody from alice listens.
        sql.execute("UPDATE background_tasks SET status = 'processing', progress = 50 WHERE id = %s", (mine,))
        sql.execute("UPDATE background_tasks SET status = 'completed' WHERE id = %s", (mine,))
        later = insert(sql, user="alice")
        insert(sql, user="bob")
        for headers, params in (({"Last-Event-ID": str(last_id)}, {}), ({}, {"lastEventId": str(last_id)})):
            async with client.stream(
                "GET", "/api/events", params=params, headers={"x-test-user": "alice", **headers}
            ) as resp:
                it = read_events(resp)
                got: dict[str, str] = {}
                while True:
                    m = await next_message(it)
                    if m["event"] == "ready":
                        break
                    assert m["event"] == "task" and m["data"]["userId"] == "alice"
                    got[m["data"]["id"]] = m["data"]["status"]
                assert got[mine] == "completed" and got[later] == "pending"
                assert m["id"] >= msg["id"]


async def test_events_stream_status_filter_and_deletes_for_a_superuser(
    start_api: Callable[..., Awaitable[Api]], sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    async with (
        httpx.AsyncClient(base_url=api.base, timeout=10) as client,
        client.stream("GET", "/api/events", params={"status": "processing,failed", "type": "sleep"}) as resp,
    ):
        it = read_events(resp)
        await next_message(it)  # ready
        ignored = insert(sql, task_type="noop")
        tid = insert(sql, task_type="sleep")
        sql.execute("UPDATE background_tasks SET status = 'processing' WHERE id = ANY(%s)", ([ignored, tid],))
        m = await next_message(it)
        assert (m["event"], m["data"]["id"], m["data"]["status"]) == ("task", tid, "processing")
        sql.execute(
            "UPDATE background_tasks SET status = 'error', error_message = 'boom' WHERE id = %s", (tid,)
        )
        m = await next_message(it)
        assert m["data"]["status"] == "error"
        sql.execute("DELETE FROM background_tasks WHERE id = %s", (tid,))
        m = await next_message(it)
        assert m["event"] == "deleted" and m["data"] == {"id": tid}
        sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 3")
        m = await next_message(it)
        assert m["event"] == "queue" and m["data"]["maxConcurrentTasks"] == 3


async def test_events_stream_rejects_a_bad_last_event_id(start_api: Callable[..., Awaitable[Api]]) -> None:
    api = await start_api()
    async with httpx.AsyncClient(base_url=api.base, timeout=10) as client:
        r = await client.get("/api/events", headers={"Last-Event-ID": "yesterday"})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]
        r = await client.get("/api/events", params={"status": "sleeping"})
        assert r.status_code == 400 and "status" in r.json()["error"]
    assert api.hub.subscriber_count == 0


async def test_websocket_carries_the_same_events(
    start_api: Callable[..., Awaitable[Api]], sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    async with websockets.connect(f"ws://127.0.0.1:{api.port}/api/ws?type=sleep") as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ready["event"] == "ready"
        insert(sql, task_type="noop")
        tid = insert(sql, task_type="sleep")
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert msg["event"] == "task" and msg["data"]["id"] == tid and msg["id"] > ready["id"]
        await api.hub.wait_until(lambda: api.hub.subscriber_count == 1, 5, "ws subscribed")
    await api.hub.wait_until(lambda: api.hub.subscriber_count == 0, 5, "ws subscriber released")


async def test_two_hundred_subscribers_that_connect_and_drop_leave_nothing_in_the_hub(
    start_api: Callable[..., Awaitable[Api]], sql: psycopg.Connection[Any]
) -> None:
    api = await start_api(bgtasks_max_streams_per_user=200)  # all are the local user's
    tid = insert(sql)
    paths = [f"/api/subscribeToTask?taskId={tid}", "/api/events", "/api/events?lastEventId=0"]

    async def connect(i: int) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(f"GET {paths[i % 3]} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        await asyncio.wait_for(reader.readuntil(b"data:"), 10)  # the first event: it is subscribed
        return writer

    writers = await asyncio.gather(*(connect(i) for i in range(200)))
    assert api.hub.subscriber_count == 200
    sql.execute("UPDATE background_tasks SET progress = 5 WHERE id = %s", (tid,))  # events in flight
    for w in writers:
        w.transport.abort()  # the client goes away without a goodbye
    await api.hub.wait_until(lambda: api.hub.subscriber_count == 0, 5, "all 200 subscribers released")
    assert api.hub._by_task == {} and api.hub._streams == {}  # no empty per-task or per-owner sets left
