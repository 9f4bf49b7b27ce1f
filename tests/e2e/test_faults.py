"""Fault injection: 3 workers and 2 API processes work through sleeping tasks while workers are SIGKILLed
(and restarted), LISTEN connections are terminated, and PostgreSQL restarts once.

Then: every task completed exactly once in the table's accounting, no task ran twice at the same time, the
global limit was never exceeded, every SSE subscriber saw every terminal event, and the APIs answered 5xx
only while the database restarted (503 with Retry-After). Short form here; the long form by hand:
`BGTASKS_FAULT_TASKS=5000 python -m pytest tests/e2e/test_faults.py -s -n 0`.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import threading
import time
from typing import Any

import httpx
import psycopg
import psycopg.rows
import pytest

from tests.processes import Processes, wait_until
from tests.rows import one

TASKS = int(os.environ.get("BGTASKS_FAULT_TASKS", "1200"))
LIMIT = 8
KILL_EVERY_S = 1.5
LISTEN_KILL_EVERY_S = 2.0


class Subscriber(threading.Thread):
    """An SSE client of /api/events that reconnects with Last-Event-ID like a browser's EventSource."""

    def __init__(self, base: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.base, self.stop = base, stop
        self.completed: set[str] = set()
        self.reconnects = 0

    def run(self) -> None:
        last_id: str | None = None
        while not self.stop.is_set():
            try:
                headers = {"Last-Event-ID": last_id} if last_id else {}
                with httpx.stream("GET", self.base + "/api/events", headers=headers,
                                  timeout=httpx.Timeout(5, read=20)) as response:
                    event, data = None, []
                    for line in response.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.startswith("id:"):
                            last_id = line[3:].strip()
                        elif line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif line == "":
                            if event == "task" and data:
                                task = json.loads("".join(data))
                                if task.get("status") == "completed":
                                    self.completed.add(task["id"])
                            event, data = None, []
            except (httpx.HTTPError, ValueError):
                pass
            self.reconnects += 1
            time.sleep(0.2)


class Poller(threading.Thread):
    """Reads through both APIs all along and keeps every status code it got, with when."""

    def __init__(self, bases: list[str], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.bases, self.stop = bases, stop
        self.answers: list[tuple[float, int, str | None, str]] = []

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                for base in self.bases:
                    for path in ("/api/tasks?limit=5", "/api/tasks/counts", "/healthz"):
                        try:
                            r = client.get(base + path)
                            self.answers.append((time.time(), r.status_code, r.headers.get("retry-after"), path))
                        except httpx.HTTPError as exc:
                            self.answers.append((time.time(), -1, None, f"{path}: {exc!r}"))
                time.sleep(0.05)


def _create_all(bases: list[str]) -> None:
    """Create the tasks through both APIs in batches; a batch that meets a fault is sent again with the same
    idempotency keys, so nothing is created twice."""
    rng = random.Random(7)
    for start in range(0, TASKS, 100):
        batch = [{"taskType": "sleep", "maxRetries": 20, "idempotencyKey": f"fault-{i}",
                  "payload": {"seconds": rng.uniform(0.005, 0.08), "steps": 1}}
                 for i in range(start, min(TASKS, start + 100))]
        base = bases[(start // 100) % len(bases)]
        for _ in range(100):
            try:
                if httpx.post(base + "/api/tasks/batch", json={"tasks": batch}, timeout=10).status_code == 201:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"batch at {start} was never created")


def test_nothing_is_lost_or_doubled_under_faults(pg_server: Any, database_url: str,
                                                 sql: psycopg.Connection[Any], procs: Processes) -> None:
    if pg_server.embedded is None:
        pytest.skip("restarting PostgreSQL needs the embedded test server")
    env = {"BGTASKS_LEASE_S": "4", "BGTASKS_HEARTBEAT_S": "0.5", "BGTASKS_REAP_INTERVAL_S": "0.5"}
    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = %s, retry_base_delay_ms = 100", (LIMIT,))
    # Thousands of tasks a minute from one user: over the default creation rate of 1,000 a minute.
    sql.execute("INSERT INTO user_limits (user_id, max_created_per_minute) VALUES ('local', 100000) "
                "ON CONFLICT (user_id) DO UPDATE SET max_created_per_minute = EXCLUDED.max_created_per_minute")
    workers = [procs.worker(concurrency=4, **env) for _ in range(3)]
    bases = [procs.api(None, **env)[1] for _ in range(2)]
    stop = threading.Event()
    subscribers = [Subscriber(base, stop) for base in bases for _ in range(2)]
    poller = Poller(bases, stop)
    for t in [*subscribers, poller]:
        t.start()
    creator = threading.Thread(target=_create_all, args=(bases,), daemon=True)
    creator.start()

    kills: dict[int, float] = {}
    restart_window: tuple[float, float] | None = None
    rng = random.Random(11)
    next_kill = time.monotonic() + KILL_EVERY_S
    next_listen_kill = time.monotonic() + LISTEN_KILL_EVERY_S
    deadline = time.monotonic() + max(240, TASKS / 8)
    listen_kills = 0

    def completed() -> int:
        while True:
            try:
                with psycopg.connect(database_url, autocommit=True) as c:
                    return int(one(c, "SELECT count(*) FROM background_tasks WHERE status = 'completed'")[0])
            except psycopg.OperationalError:
                time.sleep(0.2)

    done = 0
    while done < TASKS:
        assert time.monotonic() < deadline, f"only {done} of {TASKS} tasks completed in time"
        now = time.monotonic()
        if now >= next_kill:
            victim = workers.pop(rng.randrange(len(workers)))
            kills[victim.pid] = time.time()
            victim.kill()
            workers.append(procs.worker(concurrency=4, **env))
            next_kill = time.monotonic() + KILL_EVERY_S
        if now >= next_listen_kill:
            try:
                with psycopg.connect(database_url, autocommit=True) as c:
                    listen_kills += len(c.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query ILIKE 'LISTEN%'").fetchall())
            except psycopg.OperationalError:
                pass
            next_listen_kill = time.monotonic() + LISTEN_KILL_EVERY_S
        if restart_window is None and done >= TASKS * 0.3:
            began = time.time()
            pg_server.embedded.restart()
            restart_window = (began, time.time())
        done = completed()
        time.sleep(0.1)
    creator.join(30)

    wait_until(lambda: all(len(s.completed) >= TASKS for s in subscribers), 30,
               "every subscriber to see every completion")
    stop.set()

    # A connection of its own (the fixture's died with the restart), closed here, not by the GC.
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as sql:
        # The table's own accounting: every task completed, counted once.
        rows = sql.execute("SELECT status::text, count(*) AS n FROM background_tasks GROUP BY 1").fetchall()
        assert rows == [{"status": "completed", "n": TASKS}]
        counted = one(sql, "SELECT sum(n) AS n FROM task_counts WHERE status = 'completed'")["n"]
        assert counted == TASKS
        ids = {r["id"] for r in sql.execute("SELECT id FROM background_tasks").fetchall()}
    for s in subscribers:
        assert s.completed >= ids

    # Executions from the actors' journal; an attempt of a killed worker ends when its process died.
    runs: dict[tuple[str, int], list[float]] = {}
    for line in procs.journal_lines():
        key = (line["task"], line["attempt"])
        if line["event"] == "start":
            runs[key] = [line["t"], kills.get(line["pid"], float("inf")), line["pid"]]
        elif key in runs:
            runs[key][1] = line["t"]
    by_task: dict[str, list[list[float]]] = collections.defaultdict(list)
    for (task, _), span in runs.items():
        by_task[task].append(span)
    for task, spans in by_task.items():
        spans.sort()
        for a, b in itertools.pairwise(spans):
            assert b[0] >= a[1], f"task {task} ran twice at once: {spans}"
    events = sorted([(s[0], 1) for s in runs.values()] + [(s[1], -1) for s in runs.values()],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= LIMIT

    # The APIs: no 5xx except 503 with Retry-After while the database restarted.
    assert restart_window is not None
    began, ended = restart_window
    bad = [a for a in poller.answers if a[1] >= 500 or a[1] == -1]
    outside = [a for a in bad if not (began - 0.5 <= a[0] <= ended + 5)]
    assert outside == [], outside[:5]
    assert all(a[1] == 503 and a[2] for a in bad if a[1] >= 500), bad[:5]
    assert len(poller.answers) > 100
    print(f"\nfaults: {len(kills)} workers killed, {listen_kills} LISTEN connections terminated, "
          f"1 PostgreSQL restart ({ended - began:.2f}s); {TASKS} tasks, {len(runs)} executions, "
          f"peak {peak}/{LIMIT}, {len(bad)} answers 503 during the restart, "
          f"{sum(s.reconnects for s in subscribers)} SSE reconnects")
