"""Two API processes and two worker processes on one database: live updates follow a task whichever worker
runs it, and a cancel sent to one API stops the task on its worker and reaches both APIs' subscribers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.processes import BGTASKS, processes, wait_until
from tests.rows import one

pytestmark = pytest.mark.slow


async def sse(client: httpx.AsyncClient, path: str, out: list[dict[str, Any]], opened: asyncio.Event) -> None:
    """Append every SSE message of `path` to `out` (data parsed) until the server closes the stream."""
    async with client.stream("GET", path) as resp:
        assert resp.status_code == 200, await resp.aread()
        opened.set()
        msg: dict[str, Any] = {}
        async for line in resp.aiter_lines():
            if line == "":
                if "data" in msg:
                    out.append(msg)
                msg = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                msg[field] = json.loads(value) if field == "data" else value


async def until(predicate: Any, within_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def cluster(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[str, str, Any]]:
    with processes(tmp_path, database_url) as ps:
        _, api_a = ps.api()
        _, api_b = ps.api()
        ps.worker(concurrency=1)
        ps.worker(concurrency=1)
        yield api_a, api_b, ps


def create(sql: psycopg.Connection[Any], task_type: str, payload: dict[str, Any], n: int = 1) -> list[str]:
    rows = sql.execute(
        "INSERT INTO background_tasks (task_type, user_id, payload) SELECT %s, 'local', %s "
        "FROM generate_series(1, %s) RETURNING id",
        (task_type, json.dumps(payload), n),
    ).fetchall()
    return [r["id"] for r in rows]


async def test_subscriber_on_one_api_follows_tasks_run_by_either_worker(
    cluster: tuple[str, str, Any], database_url: str
) -> None:
    api_a, _api_b, ps = cluster
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as sql:
        sql.execute("UPDATE task_queue_settings SET is_active = false")  # so each stream opens on `pending`
        ids = create(sql, "sleep", {"seconds": 1.0, "steps": 4}, n=4)
        streams: dict[str, list[dict[str, Any]]] = {tid: [] for tid in ids}
        async with httpx.AsyncClient(base_url=api_a, timeout=30) as client:
            opened = {tid: asyncio.Event() for tid in ids}
            readers = [
                asyncio.create_task(
                    sse(client, f"/api/subscribeToTask?taskId={tid}", streams[tid], opened[tid])
                )
                for tid in ids
            ]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened.values())), 10)
            await until(lambda: all(streams.values()), 10, "the current state on connect")
            sql.execute("UPDATE task_queue_settings SET is_active = true")
            await asyncio.wait_for(asyncio.gather(*readers), 60)
        for tid, msgs in streams.items():
            kinds = [m["data"]["type"] for m in msgs]
            statuses = [m["data"]["task"]["status"] for m in msgs]
            assert statuses[0] == "pending", (tid, statuses)
            assert "processing" in statuses, (tid, statuses)
            assert kinds[-1] == "complete" and statuses[-1] == "completed", (tid, kinds)
            assert msgs[-1]["data"]["task"]["result"] == {"slept": 1.0}
            ids_seen = [int(m["id"]) for m in msgs]
            assert ids_seen == sorted(ids_seen)
        workers = {
            r["worker_id"]
            for r in sql.execute(
                "SELECT worker_id FROM background_tasks WHERE id = ANY(%s)", (ids,)
            ).fetchall()
        }
        assert len(workers) == 2, f"both workers should have run some of the tasks: {workers}"
        assert {ln["pid"] for ln in ps.journal_lines()} == {p.pid for p in ps.procs[2:]}


async def test_cancel_on_api_b_stops_the_running_task_and_both_apis_subscribers_see_it(
    cluster: tuple[str, str, Any], database_url: str
) -> None:
    api_a, api_b, ps = cluster
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as sql:
        [tid] = create(sql, "sleep", {"seconds": 120, "steps": 240})
        on_a: list[dict[str, Any]] = []
        on_b: list[dict[str, Any]] = []
        async with (
            httpx.AsyncClient(base_url=api_a, timeout=30) as a,
            httpx.AsyncClient(base_url=api_b, timeout=30) as b,
        ):
            opened_a, opened_b = asyncio.Event(), asyncio.Event()
            reader_a = asyncio.create_task(sse(a, f"/api/subscribeToTask?taskId={tid}", on_a, opened_a))
            reader_b = asyncio.create_task(sse(b, "/api/events", on_b, opened_b))
            try:
                await asyncio.wait_for(asyncio.gather(opened_a.wait(), opened_b.wait()), 10)
                await until(
                    lambda: any(
                        m["data"]["task"]["status"] == "processing" and m["data"]["task"]["progress"] > 0
                        for m in on_a
                    ),
                    30,
                    "the task running on a worker (subscriber on A)",
                )
                r = await b.post(f"/api/tasks/{tid}/cancel", json={"reason": "stop it"})
                not_routed = r.status_code == 405 or (r.status_code == 404 and "no such endpoint" in r.text)
                if not_routed:
                    sql.execute("SELECT cancel_task(%s, 'stop it')", (tid,))  # REST cancel not routed yet
                else:
                    assert r.status_code == 200, r.text
                await asyncio.wait_for(reader_a, 10)  # A's stream ends with the terminal message
                last = on_a[-1]["data"]
                assert last["type"] == "error" and last["task"]["status"] == "cancelled"
                assert last["error"].startswith("cancelled")
                await until(
                    lambda: any(
                        m.get("event") == "task"
                        and m["data"]["id"] == tid
                        and m["data"]["status"] == "cancelled"
                        for m in on_b
                    ),
                    10,
                    "API B's stream to show the cancel",
                )
            finally:
                for reader in (reader_a, reader_b):
                    reader.cancel()
                await asyncio.gather(reader_a, reader_b, return_exceptions=True)

        # The worker stopped the actor (its journal shows the run ending early), and stays cancelled.
        def ended() -> list[dict[str, Any]]:
            return [ln for ln in ps.journal_lines() if ln["task"] == tid and ln["event"] == "end"]

        wait_until(ended, 15, "the sleep actor to stop after the cancel")
        assert ended()[0].get("error"), ended()
        row = sql.execute("SELECT status FROM background_tasks WHERE id = %s", (tid,)).fetchone()
        assert row and row["status"] == "cancelled"


async def test_bgtasks_keys_revoke_ends_the_keys_streams_on_both_api_processes(
    tmp_path: Path, database_url: str
) -> None:
    from tests.e2e.test_dashboard import make_key

    with processes(tmp_path, database_url) as ps, psycopg.connect(
            database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as sql:
        _, api_a = ps.api(BGTASKS_DEV="false")
        _, api_b = ps.api(BGTASKS_DEV="false")
        key = make_key(ps, "alice")
        auth = {"Authorization": f"Bearer {key}"}
        async with (
            httpx.AsyncClient(base_url=api_a, timeout=30) as a,
            httpx.AsyncClient(base_url=api_b, timeout=30, headers=auth) as b,
        ):
            made = await a.post("/api/tasks", headers=auth, json={"taskType": "noop", "runAt": "2100-01-01T00:00:00Z"})
            assert made.status_code == 201, made.text
            task = made.json()["task"]
            on_a: list[dict[str, Any]] = []  # a browser on A: the task's subscribeToken, no key
            on_b: list[dict[str, Any]] = []  # the key itself on B
            opened_a, opened_b = asyncio.Event(), asyncio.Event()
            path_a = f"/api/subscribeToTask?taskId={task['id']}&token={task['subscribeToken']}"
            reader_a = asyncio.create_task(sse(a, path_a, on_a, opened_a))
            reader_b = asyncio.create_task(sse(b, "/api/events", on_b, opened_b))
            await asyncio.wait_for(asyncio.gather(opened_a.wait(), opened_b.wait()), 10)
            await until(lambda: on_a and any(m.get("event") == "ready" for m in on_b), 10, "both streams live")

            revoke = await asyncio.create_subprocess_exec(
                *BGTASKS, "keys", "revoke", key, env=ps.env(), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(revoke.communicate(), 60)
            assert revoke.returncode == 0, out

            await asyncio.wait_for(asyncio.gather(reader_a, reader_b), 10)  # both responses end
            assert on_a[-1]["data"]["type"] == "error" and "revoked" in on_a[-1]["data"]["error"], on_a[-1]
            assert on_b[-1]["event"] == "dropped" and on_b[-1]["data"]["code"] == "revoked", on_b[-1]
            assert (await b.get("/api/events")).status_code == 401
        assert one(sql, "SELECT revoked_at IS NOT NULL AS r FROM api_keys")["r"]
