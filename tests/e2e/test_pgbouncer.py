"""Through Debian's pgbouncer in transaction mode (started by the test): with a direct URL for LISTEN, an
API and two workers complete 1,000 tasks and a cancel reaches its actor; without one, each process refuses
to start with one line saying what to set."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import httpx
import psycopg
import pytest

from tests.pgbouncer import pgbouncer, require_binary
from tests.processes import BGTASKS, Processes, wait_until
from tests.rows import one

pytestmark = pytest.mark.slow

TASKS = 1000


def test_without_a_direct_url_every_process_refuses_with_one_line(database_url: str, procs: Processes) -> None:
    require_binary()
    with pgbouncer(database_url, "transaction") as pooled:
        for command in (["worker"], ["api", "--port", "0"], ["migrate"]):
            run = subprocess.run([*BGTASKS, *command], env=procs.env(DATABASE_URL=pooled), capture_output=True,
                                 text=True, timeout=60)
            lines = run.stderr.strip().splitlines()
            assert run.returncode == 2, (command, run.stdout, run.stderr)
            assert len(lines) == 1 and "BGTASKS_DIRECT_DATABASE_URL" in lines[0], (command, run.stderr)


def test_api_and_workers_work_through_pgbouncer_in_transaction_mode(
        database_url: str, sql: psycopg.Connection[Any], procs: Processes) -> None:
    require_binary()
    # 1,000 tasks and one more from one user: over the default creation rate of 1,000 a minute.
    sql.execute("INSERT INTO user_limits (user_id, max_created_per_minute) VALUES ('local', 100000) "
                "ON CONFLICT (user_id) DO UPDATE SET max_created_per_minute = EXCLUDED.max_created_per_minute")
    with pgbouncer(database_url, "transaction", pool_size=10) as pooled:
        env = {"DATABASE_URL": pooled, "BGTASKS_DIRECT_DATABASE_URL": database_url}
        workers = [procs.worker(concurrency=4, **env) for _ in range(2)]
        api, base = procs.api(None, **env)
        with httpx.Client(base_url=base, timeout=30) as http:
            for start in range(0, TASKS, 100):
                batch = [{"taskType": "noop", "payload": {"n": i}} for i in range(start, start + 100)]
                created = http.post("/api/tasks/batch", json={"tasks": batch})
                assert created.status_code == 201, created.text

            def completed() -> bool:
                return one(sql, "SELECT count(*) AS n FROM background_tasks WHERE status = 'completed'"
                                   )["n"] == TASKS

            wait_until(completed, 120, f"{TASKS} tasks completed through pgbouncer")
            assert one(sql, "SELECT count(*) AS n FROM background_tasks WHERE retry_count > 0 OR attempt > 1"
                               )["n"] == 0
            for _ in range(20):  # reads through the pooled API connections, many times each
                assert http.get("/api/tasks?limit=5").status_code == 200
                assert http.get("/api/tasks/counts").status_code == 200

            # A cancel reaches the actor running it: the worker hears the NOTIFY on its direct connection.
            task = http.post("/api/tasks", json={"taskType": "sleep", "payload": {"seconds": 60, "steps": 600}})
            assert task.status_code == 201, task.text
            tid = task.json()["task"]["id"]
            wait_until(lambda: any(ln["task"] == tid and ln["event"] == "start" for ln in procs.journal_lines()),
                       30, "the sleep task to start")
            cancelled = http.post(f"/api/tasks/{tid}/cancel", json={"reason": "through the pooler"})
            assert cancelled.status_code == 200, cancelled.text
            end = wait_until(lambda: next((ln for ln in procs.journal_lines()
                                           if ln["task"] == tid and ln["event"] == "end"), None),
                             15, "the cancelled actor to stop")
            assert end.get("error"), end
        for p in [*workers, api]:
            p.stop()
        for p in [*workers, api]:
            out = p.output()
            assert "transaction pooler" in out  # each process found the pooler itself
            assert not re.search(r"DuplicatePreparedStatement|InvalidSQLStatementName|Traceback| ERROR ", out), out[-3000:]
