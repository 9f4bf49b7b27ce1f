"""Shared by the AI actor tests: a reply router for FakeOpenAI (tasks running at once each get their own
script, chosen by a marker in the prompt), task rows inserted as at psql, and waits that say what never came."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from starlette.responses import Response, StreamingResponse

from tests.fakes.openai_server import FakeOpenAI, Scripted, answer
from tests.processes import Proc, Processes, wait_until
from tests.rows import one


class Router:
    """A FakeOpenAI default reply that picks a script by a marker found in the request's messages.

    route(marker, *replies, then=...) queues replies for requests mentioning ``marker``; when they run out,
    ``then`` (default: a valid answer to the requested schema) answers. Unmarked requests get a valid answer.
    """

    def __init__(self) -> None:
        self._routes: dict[str, tuple[deque[Scripted], Scripted]] = {}
        self._lock = threading.Lock()
        self.seen: dict[str, int] = {}

    def route(self, marker: str, *replies: Scripted, then: Scripted | None = None) -> Router:
        with self._lock:
            self._routes[marker] = (deque(replies), then or answer())
        return self

    async def __call__(self, body: dict[str, Any], fake: FakeOpenAI) -> Response:
        text = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
        with self._lock:
            for marker, (queue, then) in self._routes.items():
                if marker in text:
                    self.seen[marker] = self.seen.get(marker, 0) + 1
                    reply = queue.popleft() if queue else then
                    break
            else:
                reply = answer()
        return await reply(body, fake)


class Abandoned:
    """A reply that sends headers, then stalls ``seconds`` before the body; records when the client hung up
    (the worker abandoned the call), which a plain stall cannot see."""

    def __init__(self, seconds: float = 30.0) -> None:
        self.seconds = seconds
        self.started: float | None = None
        self.hung_up: float | None = None

    async def __call__(self, body: dict[str, Any], fake: FakeOpenAI) -> Response:
        self.started = time.monotonic()

        async def chunks() -> AsyncIterator[bytes]:
            try:
                deadline = time.monotonic() + self.seconds
                # Polls a threading.Event set from the test thread, outside this loop.
                while not fake.stopping.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                yield b"{}"
            except BaseException:
                self.hung_up = time.monotonic()
                raise

        return StreamingResponse(chunks(), media_type="application/json")


def insert_task(sql: psycopg.Connection[Any], task_type: str, payload: dict[str, Any] | None = None, *,
                user_id: str = "tester", **cols: Any) -> str:
    """A task created as an operator would at psql."""
    names = ["task_type", "user_id", "payload", *cols]
    values = [task_type, user_id, json.dumps(payload or {}), *cols.values()]
    row = one(sql, f"INSERT INTO background_tasks ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(values))}) "
                      "RETURNING id", values)
    return str(row["id"])


def task_row(sql: psycopg.Connection[Any], task_id: str) -> dict[str, Any]:
    row = sql.execute("SELECT *, status::text AS status FROM background_tasks WHERE id = %s", (task_id,)).fetchone()
    assert row is not None, f"task {task_id} is gone"
    return dict(row)


FINAL = ("completed", "error", "cancelled")


def wait_final(sql: psycopg.Connection[Any], task_ids: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Wait until every task is completed, error or cancelled; their rows by id."""

    def done() -> dict[str, dict[str, Any]] | None:
        rows = {i: task_row(sql, i) for i in task_ids}
        return rows if all(r["status"] in FINAL for r in rows.values()) else None

    return wait_until(done, timeout, f"tasks {task_ids} to finish")


def model_calls(sql: psycopg.Connection[Any], task_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in sql.execute("SELECT * FROM task_model_calls WHERE task_id = %s ORDER BY id",
                                         (task_id,)).fetchall()]


def attempt_errors(sql: psycopg.Connection[Any], task_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in sql.execute("SELECT * FROM task_attempt_errors WHERE task_id = %s ORDER BY id",
                                         (task_id,)).fetchall()]


def ai_worker(procs: Processes, fake: FakeOpenAI, roots: Path | None = None, concurrency: int = 2,
              **env: str) -> Proc:
    """A worker process that reaches the fake through OPENAI_BASE_URL (the real openai client, unpatched)."""
    settings = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "test-key", "BGTASKS_MODEL": "fake-model"}
    if roots is not None:
        settings["BGTASKS_PROJECT_ROOTS"] = str(roots)
    settings.update(env)
    return procs.worker(concurrency=concurrency, **settings)
