"""Credentials of reads and streams, over real HTTP (uvicorn in this process, dev mode off) and a real
PostgreSQL: `bgtasks keys revoke` ends a key's SSE and WebSocket streams on every API process (NOTIFY), the
periodic re-check finds a revocation whose NOTIFY never came, read tokens read only what they name and never
write, expire and die with their key, the per-user cap on open streams answers 429, and large results go by
reference on the all-task streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
import websockets

from bgtasks import db
from bgtasks.api.app import create_app
from bgtasks.embedded import free_port
from bgtasks.settings import load_settings
from bgtasks.store import keys
from tests.integration.test_sse import insert, next_message, read_events
from tests.rows import one

ROOT = Path(__file__).resolve().parents[2]


class Api:
    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self.base = f"http://127.0.0.1:{port}"

    @property
    def hub(self) -> Any:
        return self.app.state.hub


@pytest.fixture
async def start_api(database_url: str) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    """Start the app under uvicorn on a free port, development mode off: every request needs a key."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(clock: Callable[[], float] = time.time, **overrides: Any) -> Api:
        settings = load_settings(database_url=database_url, bgtasks_dev=False, **overrides)
        app = create_app(settings, clock=clock)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                               log_level="warning", timeout_graceful_shutdown=1))
        running.append((server, asyncio.create_task(server.serve())))
        for _ in range(400):
            if server.started:
                break
            await asyncio.sleep(0.025)
        assert server.started, "uvicorn did not start within 10s"
        api = Api(app, port)
        await api.hub.wait_until(lambda: api.hub.connected, 10, "hub connected")
        return api

    yield start
    for server, task in running:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def new_key(database_url: str, user: str, **kw: Any) -> tuple[str, int]:
    conn = await db.connect(database_url)
    try:
        key, row = await keys.create_api_key(conn, user, **kw)
    finally:
        await conn.close()
    return key, int(row["id"])


async def cli(database_url: str, *args: str) -> tuple[int, str]:
    """Run the real `bgtasks` command (without blocking this loop, which serves the API)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "OPENAI_"))}
    env["DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bgtasks.cli", *args, env=env, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def until_ready(events: AsyncIterator[dict[str, Any]]) -> None:
    while (await next_message(events, 10)).get("event") != "ready":
        pass


# ---------------------------------------------------------------- revocation


async def test_revoking_a_key_ends_its_sse_and_websocket_streams_on_every_api_process(
    start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    # The periodic re-check is left at its default (60 s): within the deadline below only the NOTIFY can
    # end the streams.
    one, two = await start_api(), await start_api()
    key, key_id = await new_key(database_url, "alice")
    other_key, _ = await new_key(database_url, "alice")  # the same user's other key keeps its stream
    auth = {"Authorization": f"Bearer {key}"}
    tid = insert(sql, user="alice", task_type="sleep")
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        sse = await stack.enter_async_context(client.stream("GET", one.base + "/api/events", headers=auth))
        assert sse.status_code == 200
        sse_events = read_events(sse)
        await until_ready(sse_events)
        follow = await stack.enter_async_context(
            client.stream("GET", f"{one.base}/api/subscribeToTask?taskId={tid}", headers=auth))
        follow_events = read_events(follow)
        assert (await next_message(follow_events, 10))["data"]["type"] == "update"
        kept = await stack.enter_async_context(client.stream(
            "GET", one.base + "/api/events", headers={"Authorization": f"Bearer {other_key}"}))
        kept_events = read_events(kept)
        await until_ready(kept_events)
        ws = await stack.enter_async_context(
            websockets.connect(f"ws://127.0.0.1:{two.port}/api/ws", additional_headers=auth))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["event"] == "ready"
        await one.hub.wait_until(lambda: one.hub.subscriber_count == 3, 10, "three streams on the first API")
        await two.hub.wait_until(lambda: two.hub.subscriber_count == 1, 10, "one stream on the second API")

        code, out = await cli(database_url, "keys", "revoke", str(key_id))
        assert code == 0, out

        # The task inserted above may still reach the stream first (its NOTIFY is flushed after the stream
        # opened); nothing but that may come before the stream is dropped.
        last = await next_message(sse_events, 10)
        while last["event"] == "task" and last["data"]["id"] == tid:
            last = await next_message(sse_events, 10)
        assert last["event"] == "dropped", last
        assert last["data"]["code"] == "revoked" and "revoked" in last["data"]["reason"], last
        with pytest.raises(StopAsyncIteration):
            await next_message(sse_events, 10)  # and the response ends
        seed_last = await next_message(follow_events, 10)
        assert seed_last["data"]["type"] == "error" and "revoked" in seed_last["data"]["error"], seed_last
        ws_last = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ws_last["event"] == "dropped" and ws_last["data"]["code"] == "revoked", ws_last
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

        await one.hub.wait_until(lambda: one.hub.subscriber_count == 1, 10, "the other key's stream alone")
        assert two.hub.subscriber_count == 0
        sql.execute("UPDATE background_tasks SET progress = 50 WHERE id = %s", (tid,))
        moved = await next_message(kept_events, 10)
        assert moved["event"] == "task" and moved["data"]["progress"] == 50
        again = await client.get(one.base + "/api/events", headers=auth)
        assert again.status_code == 401 and "revoked" in again.json()["error"]


async def test_the_periodic_recheck_ends_a_stream_whose_revocation_was_never_notified(
    start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    api = await start_api(bgtasks_stream_recheck_s=0.2)
    key, key_id = await new_key(database_url, "bob")
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
            "GET", api.base + "/api/events", headers={"Authorization": f"Bearer {key}"}) as sse:
        events = read_events(sse)
        await until_ready(events)
        # Triggers off for this session (as a restore or a replica would be): the revocation is not notified.
        sql.execute("SET session_replication_role = replica")
        sql.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (key_id,))
        sql.execute("SET session_replication_role = DEFAULT")
        checks = api.hub.rechecks
        last = await next_message(events, 10)
        assert last["event"] == "dropped" and last["data"]["code"] == "revoked", last
        assert api.hub.rechecks > checks, "ended by a re-check, not by a notification"


# ---------------------------------------------------------------- the per-user cap


async def test_one_stream_above_the_per_user_cap_gets_429_with_retry_after(
    start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    api = await start_api(bgtasks_max_streams_per_user=2)
    key, _ = await new_key(database_url, "carol")
    auth = {"Authorization": f"Bearer {key}"}
    tid = insert(sql, user="carol")
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        first = await stack.enter_async_context(client.stream("GET", api.base + "/api/events", headers=auth))
        first_events = read_events(first)  # kept: a collected generator would close the response
        await until_ready(first_events)
        second = await stack.enter_async_context(
            client.stream("GET", f"{api.base}/api/subscribeToTask?taskId={tid}", headers=auth))
        assert second.status_code == 200
        await api.hub.wait_until(lambda: api.hub.held_by("carol") == 2, 10, "two streams held")
        for path in ("/api/events", f"/api/subscribeToTask?taskId={tid}"):
            over = await client.get(api.base + path, headers=auth)
            assert over.status_code == 429, over.text
            assert int(over.headers["retry-after"]) > 0
            body = over.json()
            assert body["code"] == "rate_limited" and body["field"] == "streams" and "2 live streams" in body["error"]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"ws://127.0.0.1:{api.port}/api/ws", additional_headers=auth)
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body)["field"] == "streams"
        # Another user is not affected; a superuser raises carol's cap in user_limits.
        dave, _ = await new_key(database_url, "dave")
        async with client.stream("GET", api.base + "/api/events",
                                 headers={"Authorization": f"Bearer {dave}"}) as theirs:
            assert theirs.status_code == 200
        sql.execute("INSERT INTO user_limits (user_id, max_streams) VALUES ('carol', 3)")
        async with client.stream("GET", api.base + "/api/events", headers=auth) as third:
            assert third.status_code == 200
    await api.hub.wait_until(lambda: api.hub.held_by("carol") == 0, 10, "carol's streams released")


# ---------------------------------------------------------------- bounded buffers, results by reference


async def test_a_large_result_goes_by_reference_on_the_all_task_stream_and_inline_to_seed_two(
    start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    api = await start_api(bgtasks_stream_inline_bytes=1000)
    key, _ = await new_key(database_url, "erin")
    auth = {"Authorization": f"Bearer {key}"}
    tid = insert(sql, user="erin", task_type="sleep")
    big = {"questions": ["x" * 100] * 50}  # ~5 KB of JSON
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        sse = await stack.enter_async_context(client.stream("GET", api.base + "/api/events", headers=auth))
        events = read_events(sse)
        await until_ready(events)
        follow = await stack.enter_async_context(
            client.stream("GET", f"{api.base}/api/subscribeToTask?taskId={tid}", headers=auth))
        follow_events = read_events(follow)
        await next_message(follow_events, 10)
        sql.execute("UPDATE background_tasks SET status = 'processing' WHERE id = %s", (tid,))
        sql.execute("UPDATE background_tasks SET status = 'completed', result_data = %s WHERE id = %s",
                    (json.dumps(big), tid))
        while (msg := await next_message(events, 10))["data"]["status"] != "completed":
            pass
        data = msg["data"]
        assert data["result"] is None and data["resultData"] is None
        assert data["byReference"] == ["resultData", "result"] and data["href"] == f"/api/tasks/{tid}"
        fetched = (await client.get(api.base + data["href"], headers=auth)).json()
        assert fetched["task"]["result"] == big
        while (seed := await next_message(follow_events, 10))["data"]["type"] != "complete":
            pass
        assert seed["data"]["task"]["result"] == big  # seed two's `complete` keeps its shape


# ---------------------------------------------------------------- read tokens


async def test_a_subscribe_token_reads_only_its_task_and_never_writes(
    start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    key, _ = await new_key(database_url, "alice")
    auth = {"Authorization": f"Bearer {key}"}
    other = insert(sql, user="alice")
    bobs = insert(sql, user="bob")
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as client:
        made = await client.post("/api/tasks", headers=auth, json={"taskType": "noop", "label": "mine"})
        assert made.status_code == 201, made.text
        task = made.json()["task"]
        tid, token = task["id"], task["subscribeToken"]
        assert task["label"] == "mine" and task["status"] == "pending"  # the other fields as they were

        read = await client.get(f"/api/tasks/{tid}", params={"token": token})
        assert read.status_code == 200 and read.json()["task"]["id"] == tid
        for task_id in (other, bobs, "task_nope"):  # out of scope: as if missing
            assert (await client.get(f"/api/tasks/{task_id}", params={"token": token})).status_code == 404
            follow = await client.get("/api/subscribeToTask", params={"taskId": task_id, "token": token})
            assert follow.status_code == 404 and follow.json()["code"] == "not_found"
        # A token never writes, lists or mints: those endpoints do not take it.
        for method, path, body in (("POST", f"/api/tasks/{tid}/cancel", {}), ("DELETE", f"/api/tasks/{tid}", None),
                                   ("PATCH", f"/api/tasks/{tid}", {"status": "cancelled"}),
                                   ("POST", "/api/tokens", {"scope": "my-tasks"}), ("GET", "/api/tasks", None)):
            refused = await client.request(method, path, params={"token": token}, json=body)
            assert refused.status_code == 401, (method, path, refused.text)
            assert "read token only reads" in refused.json()["error"]
        assert one(sql, "SELECT status FROM background_tasks WHERE id = %s", (tid,))["status"] == "pending"
        for bad in ("nope", token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"), "x" * 9000):
            refused = await client.get(f"/api/tasks/{tid}", params={"token": bad})
            assert refused.status_code == 401 and refused.json()["field"] is None

        # The all-task stream with the token carries this task's changes only.
        async with client.stream("GET", "/api/events", params={"token": token}) as sse:
            assert sse.status_code == 200
            events = read_events(sse)
            await until_ready(events)
            sql.execute("UPDATE background_tasks SET progress = 10 WHERE id = ANY(%s)", ([other, bobs],))
            sql.execute("UPDATE background_tasks SET progress = 20 WHERE id = %s", (tid,))
            moved = await next_message(events, 10)
            assert moved["event"] == "task" and moved["data"]["id"] == tid and moved["data"]["progress"] == 20
            assert api.hub.held_by("alice") == 1  # the token's stream counts for the user who minted it
        # The WebSocket twin with the token: the same, and no key needed.
        async with websockets.connect(f"ws://127.0.0.1:{api.port}/api/ws?token={token}") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["event"] == "ready"
            sql.execute("UPDATE background_tasks SET progress = 30 WHERE id = ANY(%s)", ([other, bobs],))
            sql.execute("UPDATE background_tasks SET progress = 40 WHERE id = %s", (tid,))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["event"] == "task" and msg["data"]["id"] == tid and msg["data"]["progress"] == 40
        with pytest.raises(websockets.InvalidStatus) as forged:
            await websockets.connect(f"ws://127.0.0.1:{api.port}/api/ws?token=forged")
        assert forged.value.response.status_code == 401


async def test_post_tokens_mints_for_named_tasks_or_my_tasks_and_checks_what_it_names(
    start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    api = await start_api(bgtasks_read_token_max_ttl_s=1200)
    key, _ = await new_key(database_url, "alice")
    root, _ = await new_key(database_url, "root", is_superuser=True)
    auth = {"Authorization": f"Bearer {key}"}
    a1, a2, b1 = insert(sql, user="alice"), insert(sql, user="alice"), insert(sql, user="bob")
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as client:
        mine = await client.post("/api/tokens", headers=auth, json={"scope": "my-tasks", "ttl": 60})
        assert mine.status_code == 201, mine.text
        body = mine.json()
        assert body["scope"] == "my-tasks" and body["ttl"] == 60 and body["taskIds"] is None
        for tid, status in ((a1, 200), (a2, 200), (b1, 404)):
            assert (await client.get(f"/api/tasks/{tid}", params={"token": body["token"]})).status_code == status

        named = (await client.post("/api/tokens", headers=auth, json={"taskIds": [a2]})).json()
        assert named["ttl"] == 900 and named["taskIds"] == [a2]  # the default lifetime
        assert (await client.get(f"/api/tasks/{a1}", params={"token": named["token"]})).status_code == 404

        for bad, field in (({"taskIds": [b1]}, None), ({"taskIds": [a1], "scope": "my-tasks"}, "taskIds"),
                           ({}, "taskIds"), ({"scope": "everything"}, "scope"), ({"taskIds": []}, "taskIds"),
                           ({"taskIds": "x"}, "taskIds"), ({"scope": "my-tasks", "ttl": 1201}, "ttl"),
                           ({"scope": "my-tasks", "ttl": 0}, "ttl"), ({"scope": "my-tasks", "write": True}, "write"),
                           ({"taskIds": ["t"] * 101}, None)):
            refused = await client.post("/api/tokens", headers=auth, json=bad)
            assert refused.status_code in (404, 422), (bad, refused.text)
            assert refused.json()["success"] is False
            if field:
                assert refused.json()["field"] == field, (bad, refused.json())
        assert (await client.post("/api/tokens", json={"scope": "my-tasks"})).status_code == 401

        # A superuser's token may name any user's task, and reads only those.
        su = (await client.post("/api/tokens", headers={"Authorization": f"Bearer {root}"},
                                json={"taskIds": [b1]})).json()["token"]
        assert (await client.get(f"/api/tasks/{b1}", params={"token": su})).status_code == 200
        assert (await client.get(f"/api/tasks/{a1}", params={"token": su})).status_code == 404


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_read_token_expires_and_dies_with_the_key_that_minted_it(
    start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    clock = FakeClock()
    api = await start_api(clock=clock, bgtasks_stream_recheck_s=0.2)
    key, key_id = await new_key(database_url, "alice")
    auth = {"Authorization": f"Bearer {key}"}
    tid = insert(sql, user="alice")
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as client:
        short = (await client.post("/api/tokens", headers=auth, json={"taskIds": [tid], "ttl": 60})).json()["token"]
        long = (await client.post("/api/tokens", headers=auth, json={"taskIds": [tid], "ttl": 3600})).json()["token"]
        async with client.stream("GET", "/api/events", params={"token": short}) as sse:
            events = read_events(sse)
            await until_ready(events)
            clock.now += 61  # the short token's minute is over
            last = await next_message(events, 10)
            assert last["event"] == "dropped" and last["data"]["code"] == "expired", last
        expired = await client.get(f"/api/tasks/{tid}", params={"token": short})
        assert expired.status_code == 401 and "expired" in expired.json()["error"]

        async with client.stream("GET", "/api/subscribeToTask", params={"taskId": tid, "token": long}) as follow:
            follow_events = read_events(follow)
            assert (await next_message(follow_events, 10))["data"]["type"] == "update"
            sql.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (key_id,))
            last = await next_message(follow_events, 10)
            assert last["data"]["type"] == "error" and "revoked" in last["data"]["error"], last
        dead = await client.get(f"/api/tasks/{tid}", params={"token": long})
        assert dead.status_code == 401 and "revoked" in dead.json()["error"]
