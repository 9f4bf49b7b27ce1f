"""Task types in the application's own code: examples/myapp, on the worker's path only (`bgtasks worker --app
myapp.tasks`), and an API process that never imports it but validates from what the worker published."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
from httpx_sse import connect_sse

from tests.processes import BGTASKS, Processes, free_port, spawn, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_the_api_process_cannot_import_the_application() -> None:
    run = subprocess.run([sys.executable, "-c", "import myapp"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0 and "No module named 'myapp'" in run.stderr


def test_an_application_type_runs_with_progress_over_sse_and_bad_payloads_get_422(procs: Processes) -> None:
    procs.start(["worker", "--app", "myapp.tasks", "--concurrency", "2"], "ready", cwd=EXAMPLES)
    _, base = procs.api()
    with httpx.Client(base_url=base, timeout=10) as http:
        bad = http.post("/api/tasks", json={"taskType": "summarize", "payload": {"text": ""}})
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == "payload.text"
        made = http.post("/api/tasks", json={"taskType": "summarize", "payload": {"text": "A long story. " * 20}})
        assert made.status_code == 201, made.text
        task_id = made.json()["task"]["id"]
        messages: list[dict[str, Any]] = []
        with connect_sse(http, "GET", "/api/subscribeToTask", params={"taskId": task_id},
                         timeout=httpx.Timeout(10, read=60)) as source:
            for sse in source.iter_sse():
                messages.append(json.loads(sse.data))
                if messages[-1]["type"] != "update":
                    break
        assert messages[-1]["type"] == "complete", messages
        assert messages[-1]["task"]["result"] == {"summary": ("A long story. " * 20)[:100]}
        got = http.get(f"/api/tasks/{task_id}").json()["task"]
        assert got["status"] == "completed" and got["progress"] == 100
        assert got["result"] == {"summary": ("A long story. " * 20)[:100]}
        types = {t["name"]: t for t in http.get("/api/task-types").json()["taskTypes"]}
        assert types["summarize"]["liveWorkers"] == 1 and types["summarize"]["published"] is True
        assert types["summarize"]["workers"] == [types["summarize"]["publishedBy"]]
        assert types["summarize"]["maxRetries"] == 2 and types["summarize"]["timeLimitS"] == 120
        assert types["summarize"]["payloadSchema"]["properties"]["text"]["minLength"] == 1
        assert types["word-count"]["resultSchema"]["additionalProperties"] == {"type": "integer"}
        unknown = http.post("/api/tasks", json={"taskType": "translate", "payload": {}})
        assert unknown.status_code == 422 and "translate" in unknown.json()["error"]
    listed = subprocess.run([*BGTASKS, "types", "--url", base], env=procs.env(), cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert lines["summarize"][1:4] == ["1", "2", "120s"] and "Summarise" in listed.stdout
    assert lines["noop"][1] == "1"  # the built-in types: published by the same worker


def test_a_published_type_without_a_live_worker_is_queued_and_says_so(
        procs: Processes, sql: psycopg.Connection[Any]) -> None:
    worker = procs.start(["worker", "--app", "myapp.tasks"], "ready", cwd=EXAMPLES, BGTASKS_BUILTIN_TYPES="false")
    assert worker.stop() == 0
    served = sql.execute("SELECT name, live_workers FROM task_types_served").fetchall()
    assert {r["name"]: r["live_workers"] for r in served} == {"summarize": 0, "word-count": 0}
    _, base = procs.api()
    with httpx.Client(base_url=base, timeout=10) as http:
        made = http.post("/api/tasks", json={"taskType": "word-count", "payload": {"text": "one two"}})
        assert made.status_code == 201, made.text
        assert made.json()["task"]["status"] == "pending"
        assert "no live worker" in made.json()["waiting"]
        waiting = made.json()["task"]["id"]
        # A worker that does not serve the type leaves it alone (it would fail it: no actor); it runs a
        # later, lower-priority task it does serve.
        procs.worker(concurrency=1)
        noop = http.post("/api/tasks", json={"taskType": "noop", "priority": -10}).json()["task"]["id"]
        wait_until(lambda: http.get(f"/api/tasks/{noop}").json()["task"]["status"] == "completed", 30,
                   "the noop task run by the built-in worker")
        task = http.get(f"/api/tasks/{waiting}").json()["task"]
        assert (task["status"], task["attempt"]) == ("pending", 0), task
        procs.start(["worker", "--app", "myapp.tasks"], "ready", cwd=EXAMPLES, BGTASKS_BUILTIN_TYPES="false")
        wait_until(lambda: http.get(f"/api/tasks/{waiting}").json()["task"]["status"] == "completed", 30,
                   "the waiting task run once a worker of its type started")
        assert http.get(f"/api/tasks/{waiting}").json()["task"]["result"] == {"words": 2}


def test_an_app_module_that_does_not_import_stops_the_worker_with_one_line(procs: Processes) -> None:
    env = procs.env()
    run = subprocess.run([*BGTASKS, "worker", "--app", "nosuch.tasks"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "--app nosuch.tasks: cannot import it" in run.stderr
    nothing = subprocess.run([*BGTASKS, "worker"], env={**env, "BGTASKS_BUILTIN_TYPES": "false"}, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 2 and "no task types to run" in nothing.stderr


def test_up_with_app_runs_the_applications_types(procs: Processes) -> None:
    port = free_port()
    log = procs.tmp / "up.log"
    env = {**procs.env(), "BGTASKS_SHUTDOWN_GRACE_S": "2"}
    up = spawn([*BGTASKS, "up", "--app", "myapp.tasks", "--port", str(port)], log, cwd=EXAMPLES, env=env)
    try:
        wait_until(lambda: up.poll() is None and "serving on" in log.read_text(), 60, "the banner of `bgtasks up`")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            made = http.post("/api/tasks", json={"taskType": "word-count", "payload": {"text": "a b c"}})
            assert made.status_code == 201, made.text
            task_id = made.json()["task"]["id"]
            wait_until(lambda: http.get(f"/api/tasks/{task_id}").json()["task"]["status"] == "completed", 30,
                       "the word-count task run by up's worker")
            assert http.get(f"/api/tasks/{task_id}").json()["task"]["result"] == {"words": 3}
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0, log.read_text()[-3000:]
