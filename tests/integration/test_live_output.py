"""Live partial output (issue 18): a model streaming 200 pieces over 4 s reaches /api/events as `output`
events before `complete`; a reconnect with Last-Event-ID gets exactly the rest; a late subscriber gets the text
so far first; seed two's subscribeToTask sees only its own types; the output is gone once the task ends."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import websockets

import bgtasks
from bgtasks import actors
from bgtasks.client import Client as CliClient
from bgtasks.commands.watch import follow_output
from bgtasks.settings import load_settings
from bgtasks.store import worker as worker_store
from bgtasks.worker import Runtime
from tests.fakes.openai_server import FakeOpenAI, streamed
from tests.integration.test_sse import Api, insert, next_message, read_events
from tests.integration.test_sse import start_api as start_api  # the fixture, shared
from tests.rows import one

WORDS = [f"w{i} " for i in range(200)]
TEXT = "".join(WORDS)


@pytest.fixture
def writer_type() -> Iterator[None]:
    before = dict(actors.TASK_TYPES)

    @bgtasks.task_type("test-writer", description="Writes a text with the model")
    async def write(task: bgtasks.Task, payload: dict[str, Any]) -> dict[str, str]:
        return {"text": await task.generate_text(system="You write.", user="Write 200 words.")}

    yield
    actors.TASK_TYPES.clear()
    actors.TASK_TYPES.update(before)


def run_task(database_url: str, base_url: str, task_id: str, done: threading.Event) -> None:
    """One worker's run of the task, in this process: claim, the actor, complete."""
    settings = load_settings(database_url=database_url, openai_api_key="test-key", openai_base_url=base_url)
    runtime = Runtime(settings, concurrency=1)
    try:
        [row] = runtime.claimer.claim_if_due()
        ctx = runtime.in_flight.begin(task_id, row["attempt"])
        result = asyncio.run(actors.TASK_TYPES["test-writer"].load()(ctx))
        with runtime.pool.connection() as conn:
            assert worker_store.complete_tasks(conn, [(task_id, row["attempt"], result)]) == {task_id}
    finally:
        done.set()
        runtime.claimer.drop_connection()
        runtime.pool.close()


async def collect(it: AsyncIterator[dict[str, Any]], until: Callable[[dict[str, Any]], bool],
                  within_s: float = 60) -> list[dict[str, Any]]:
    """Messages (keep-alives skipped) up to and including the first for which `until` holds."""
    out: list[dict[str, Any]] = []
    while True:
        m = await next_message(it, within_s)
        out.append(m)
        if until(m):
            return out


def completed(m: dict[str, Any]) -> bool:
    return m.get("event") == "task" and m["data"]["status"] == "completed"


def text_of(messages: list[dict[str, Any]]) -> str:
    return "".join(m["data"]["text"] for m in messages if m.get("event") == "output")


async def test_streamed_output_reaches_subscribers_live_resumes_exactly_and_is_removed_at_the_end(
    writer_type: None, start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    with FakeOpenAI() as fake:
        fake.always(streamed(TEXT, pieces=200, over_s=4.0))
        task_id = insert(sql, task_type="test-writer", payload="{}")
        done = threading.Event()
        async with (
            httpx.AsyncClient(base_url=api.base, timeout=30) as client,
            client.stream("GET", "/api/events") as whole,
            client.stream("GET", "/api/events") as dropping,
            client.stream("GET", "/api/subscribeToTask", params={"taskId": task_id}) as seed,
        ):
            whole_it, dropping_it = read_events(whole), read_events(dropping)
            for it in (whole_it, dropping_it):
                assert (await next_message(it))["event"] == "ready"
            worker = asyncio.create_task(asyncio.to_thread(run_task, database_url, fake.base_url, task_id, done))

            # The dropping subscriber leaves once a quarter of the text arrived (not at a time: the machine
            # is loaded), then comes back with the id of the last message it read.
            got: list[str] = []

            def a_quarter_read(m: dict[str, Any]) -> bool:
                got.append(text_of([m]))
                return "w49 " in "".join(got) or completed(m)

            before = await collect(dropping_it, a_quarter_read)
            await dropping.aclose()
            seen = text_of(before)
            last_id = max(m["id"] for m in before if "id" in m)
            assert not completed(before[-1]), f"the task finished before a quarter of its text was read: {before}"

            # Back with Last-Event-ID at once, and a late subscriber (none) beside it, both while the model writes.
            async def resume() -> list[dict[str, Any]]:
                headers = {"Last-Event-ID": str(last_id)}
                async with client.stream("GET", "/api/events", headers=headers) as back:
                    return await collect(read_events(back), completed)

            async def late() -> list[dict[str, Any]]:
                async with client.stream("GET", "/api/events") as late:
                    return await collect(read_events(late), completed)

            after, late_messages = await asyncio.gather(resume(), late())
            messages = await collect(whole_it, completed)
            seed_types = [m["data"]["type"] async for m in read_events(seed) if "data" in m]
            await worker
        assert done.is_set()

    outputs = [m for m in messages if m.get("event") == "output"]
    assert len(outputs) >= 5, f"only {len(outputs)} output events before complete"
    assert all(m["data"]["id"] == task_id and m["data"]["attempt"] == 1 for m in outputs)
    final = messages[-1]["data"]["result"]["text"]
    assert final == TEXT and text_of(messages) == TEXT
    ids = [m["id"] for m in messages if "id" in m]
    assert ids == sorted(ids)
    assert seen + text_of(after) == TEXT, "the reconnect did not get exactly the rest"
    assert text_of(late_messages) == TEXT, "the late subscriber did not get the text so far and the rest"
    assert seed_types and set(seed_types) <= {"update", "complete"} and seed_types[-1] == "complete"
    assert one(sql, "SELECT count(*) AS n FROM task_output")["n"] == 0
    # Coalesced: 200 pieces in far fewer writes (at most about one per 0.1 s of a 4 s stream, plus the last).
    assert len(outputs) < 100


async def test_the_python_client_and_watch_output_print_the_text_as_it_is_written(
    writer_type: None, start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection[Any]
) -> None:
    api = await start_api()
    with FakeOpenAI() as fake:
        fake.always(streamed(TEXT, pieces=200, over_s=2.0))
        task_id = insert(sql, task_type="test-writer", payload="{}")

        def read_with_client() -> tuple[list[str], str]:
            with bgtasks.Client(api.base) as client:
                pieces, last = [], ""
                for event in client.events(task_id, output=True):
                    if event.type == "output":
                        pieces.append(event.text)
                    elif event.task is not None:
                        last = event.task.status
                return pieces, last

        def watch() -> tuple[int, str]:
            out = io.StringIO()
            cli = CliClient(api.base)
            try:
                return follow_output(cli, task_id, out=out), out.getvalue()
            finally:
                cli.close()

        reading = asyncio.gather(asyncio.to_thread(read_with_client), asyncio.to_thread(watch))
        await asyncio.to_thread(run_task, database_url, fake.base_url, task_id, threading.Event())
        (pieces, last), (code, printed) = await asyncio.wait_for(reading, 60)
    assert len(pieces) > 1 and "".join(pieces) == TEXT and last == "completed"
    assert code == 0 and printed == f"{TEXT}\n{task_id} completed\n"
    # A finished task's stream starts with its final state, so watching it ends at once.
    code, printed = await asyncio.to_thread(watch)
    assert (code, printed) == (0, f"{task_id} completed\n")


async def test_the_websocket_carries_the_same_output_events(
    writer_type: None, start_api: Callable[..., Awaitable[Api]], database_url: str, sql: psycopg.Connection
) -> None:
    api = await start_api()
    with FakeOpenAI() as fake:
        fake.always(streamed(TEXT, pieces=200, over_s=2.0))
        task_id = insert(sql, task_type="test-writer", payload="{}")
        async with websockets.connect(f"ws://127.0.0.1:{api.port}/api/ws?taskId={task_id}") as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["event"] == "task" and first["data"]["status"] == "pending"  # the current state first
            worker = asyncio.create_task(
                asyncio.to_thread(run_task, database_url, fake.base_url, task_id, threading.Event()))
            pieces: list[str] = []
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if m["event"] == "output":
                    pieces.append(m["data"]["text"])
                    assert isinstance(m["id"], int)
                elif m["event"] == "task" and m["data"]["status"] == "completed":
                    break
            await worker
    assert len(pieces) > 1 and "".join(pieces) == TEXT
