"""Every AI task type end to end, as a client sees it: created over HTTP (seed one's project types through
POST /api/tasks, seed two's generation through POST /api/generateAIQuestions), run by a real worker whose
openai client reaches the local OpenAI-compatible server through OPENAI_BASE_URL, and watched over SSE
(GET /api/subscribeToTask) from pending to the result."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bgtasks.actors.model import schema_problems
from tests.fakes.openai_server import FakeOpenAI, answer, stall
from tests.integration.ai_support import Router, ai_worker
from tests.processes import Processes, wait_until

PROJECT_TYPES = ("docs", "tasks", "goals", "context", "code")


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


class Watch(threading.Thread):
    """Reads one task's SSE stream until its terminal message; keeps every message."""

    def __init__(self, base: str, task_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.task_id = f"{base}/api/subscribeToTask", task_id
        self.messages: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, params={"taskId": self.task_id}, timeout=60) as response:
                assert response.status_code == 200, response.read()
                assert response.headers["content-type"].startswith("text/event-stream")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    self.messages.append(json.loads(line[5:]))
                    self.connected.set()
                    if self.messages[-1]["type"] in ("complete", "error", "timeout"):
                        return
        except BaseException as exc:
            self.error = exc
            self.connected.set()

    @property
    def progress(self) -> list[int]:
        return [m["task"]["progress"] for m in self.messages if "task" in m]

    @property
    def descriptions(self) -> list[str]:
        return [m["task"].get("description") or "" for m in self.messages if "task" in m]


def watch_all(base: str, ids: list[str]) -> list[Watch]:
    watches = [Watch(base, i) for i in ids]
    for w in watches:
        w.start()
    for w in watches:
        assert w.connected.wait(10), f"no SSE message for {w.task_id}"
        assert w.error is None, w.error
    return watches


def finish(watches: list[Watch]) -> None:
    for w in watches:
        w.join(60)
        assert not w.is_alive(), f"SSE stream of {w.task_id} never ended: {w.messages[-3:]}"
        assert w.error is None, w.error


def api_key(database_url: str, user: str) -> str:
    """A new API key of `user`, stored as `bgtasks keys create` stores it."""
    import asyncio

    from bgtasks import db
    from bgtasks.store import keys

    async def create() -> str:
        conn = await db.connect(database_url)
        try:
            return (await keys.create_api_key(conn, user))[0]
        finally:
            await conn.close()

    return asyncio.run(create())


def post(base: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=10)


def test_every_ai_task_type_from_http_create_to_sse_result(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, tmp_path: Path) -> None:
    roots = tmp_path / "projects"
    project = roots / "shop"
    (project / "src").mkdir(parents=True)
    (project / "README.md").write_text("# Shop\nSells things.\n")
    (project / "src" / "app.py").write_text("def total(items):\n    return sum(items)\n")
    (tmp_path / "outside").mkdir()

    router = Router()
    fake.always(router)
    # Project and generation calls take a second: slow enough for SSE to show the 30 % "calling" state.
    router.route("Project: Shop", then=stall(1.0))
    router.route("quiz questions in the category", then=stall(1.0))
    _, base = procs.api(BGTASKS_PROJECT_ROOTS=str(roots))
    ai_worker(procs, fake, roots)

    # A path that escapes the roots is refused when the task is created, before any worker sees it (for a
    # key's user: in dev mode the local user may use any directory).
    (tmp_path / "outside").mkdir(exist_ok=True)
    bob = {"Authorization": f"Bearer {api_key(procs.database_url, 'bob')}"}
    for bad in (f"{roots}/shop/../../outside", str(tmp_path / "outside")):
        refused = httpx.post(base + "/api/tasks", json={"taskType": "docs", "projectId": "p", "projectName": "P",
                                                        "projectPath": bad}, headers=bob, timeout=10)
        assert refused.status_code in (400, 422), refused.text
        assert "outside the allowed project roots" in refused.text and f"({roots.resolve()})" not in refused.text

    sql.execute("UPDATE task_queue_settings SET is_active = false")  # watch every task from its first state
    generated = post(base, "/api/generateAIQuestions", {"amount": 2, "category": "Historia", "ageGroup": "adults",
                                                        "difficulty": "easy", "provider": "openai"})
    assert generated.status_code == 200, generated.text
    assert generated.json()["success"] is True
    ids = {"generation": generated.json()["taskId"]}
    for task_type in PROJECT_TYPES:
        created = post(base, "/api/tasks", {"taskType": task_type, "payload": {"instructions": "be brief"},
                                            "projectId": "shop-1", "projectName": "Shop",
                                            "projectPath": str(project)})
        assert created.status_code == 201, created.text
        ids[task_type] = created.json()["task"]["id"]
    watches = dict(zip(ids, watch_all(base, list(ids.values())), strict=True))
    sql.execute("UPDATE task_queue_settings SET is_active = true")
    finish(list(watches.values()))

    for task_type, w in watches.items():
        last = w.messages[-1]
        assert last["type"] == "complete", (task_type, w.messages)
        assert last["task"]["status"] == "completed" and last["task"]["progress"] == 100
        assert w.progress == sorted(w.progress), (task_type, w.progress)
        assert 30 in w.progress, (task_type, w.progress)  # the model call is slow enough to be seen
        assert any(d.startswith(("Calling the model", "Generating")) for d in w.descriptions), w.descriptions
        module = __import__(f"bgtasks.actors.{task_type}", fromlist=["RESULT_SCHEMA"])
        assert schema_problems(last["task"]["result"], module.RESULT_SCHEMA) == [], task_type
    questions = watches["generation"].messages[-1]["task"]["result"]["questions"]
    assert watches["generation"].messages[-1]["task"]["result"]["questionsGenerated"] == 2

    # Seed two's follow-ups on the questions just generated, by the same user.
    qids = [q["id"] for q in questions]
    router.route("Check these quiz questions", then=answer(
        {"verdicts": {str(i): {"verdict": "valid", "reason": "Checked."} for i in qids}}))
    router.route("Choose a new emoji", then=answer({"emoji": {str(i): "🎯" for i in qids}}))
    follow_ups = {}
    for task_type in ("validation", "emoji-regeneration"):
        created = post(base, "/api/tasks", {"taskType": task_type, "payload": {"questionIds": qids}})
        assert created.status_code == 201, created.text
        follow_ups[task_type] = created.json()["task"]["id"]
    watched = dict(zip(follow_ups, watch_all(base, list(follow_ups.values())), strict=True))
    finish(list(watched.values()))
    assert watched["validation"].messages[-1]["task"]["result"]["valid"] == 2
    assert [q["emoji"] for q in watched["emoji-regeneration"].messages[-1]["task"]["result"]["questions"]] == [
        "🎯", "🎯"]

    # Usage of every call is stored with its task; totals per user and type come from task_model_calls.
    totals = sql.execute("SELECT task_type, sum(prompt_tokens) AS p, count(*) AS n FROM task_model_calls "
                         "GROUP BY task_type").fetchall()
    assert {t["task_type"] for t in totals} == {*ids, *follow_ups}
    assert all(t["n"] == 1 and t["p"] > 0 for t in totals)
    task = httpx.get(f"{base}/api/tasks/{ids['docs']}", timeout=10).json()["task"]
    assert task["promptTokens"] > 0 and task["completionTokens"] > 0


def test_a_task_cancelled_over_http_mid_call_ends_cancelled_on_its_sse_stream(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    fake.always(stall(30))
    _, base = procs.api()
    ai_worker(procs, fake)
    created = post(base, "/api/generateAIQuestions", {"amount": 1, "category": "Geografi"})
    task_id = created.json()["taskId"]
    [w] = watch_all(base, [task_id])
    wait_until(lambda: len(fake.requests) == 1, 20, "the model call to start")
    cancelled = httpx.post(f"{base}/api/tasks/{task_id}/cancel", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    finish([w])
    assert w.messages[-1]["type"] == "error" and w.messages[-1]["task"]["status"] == "cancelled"
    wait_until(lambda: "interrupted" in procs.procs[-1].output(), 2.0, "the worker to interrupt the actor")
