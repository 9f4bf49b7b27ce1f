"""Through a database outage (PostgreSQL stopped for a few seconds, then started again) an API process answers
503 with Retry-After and logs a few lines, not a line per request and no traceback; a worker logs a few
lines per kind of failure too, and both carry on when the database is back."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.processes import Processes, wait_until
from tests.rows import one

pytestmark = pytest.mark.slow

OUTAGE_S = 8.0


def test_an_outage_logs_a_few_lines_and_no_traceback(pg_server: Any, database_url: str, procs: Processes) -> None:
    if pg_server.embedded is None:
        pytest.skip("stopping PostgreSQL needs the embedded test server")
    worker = procs.worker(concurrency=2, BGTASKS_LEASE_S="30", BGTASKS_HEARTBEAT_S="0.5")
    api, base = procs.api()
    answers: list[int] = []
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/api/tasks", json={"taskType": "noop"}).status_code == 201
        pg_server.embedded.stop()
        try:
            until = time.monotonic() + OUTAGE_S
            while time.monotonic() < until:
                for path in ("/api/tasks?limit=5", "/api/tasks/counts", "/healthz"):
                    r = http.get(path)
                    answers.append(r.status_code)
                    assert r.status_code == 503 and r.headers.get("retry-after"), (path, r.status_code, r.text)
                time.sleep(0.05)
        finally:
            pg_server.embedded.start()

        def answers_again() -> bool:
            return http.get("/api/tasks?limit=5").status_code == 200

        wait_until(answers_again, 30, "the API to answer 200 again")
        # A failed attempt is recorded through the worker's pool (fail_task): it must not sit out a reconnect
        # backoff grown through the outage (psycopg's doubles up to a minute; ours gives up after 2 s).
        flaky = http.post("/api/tasks", json={"taskType": "flaky", "payload": {"failures": 1}, "maxRetries": 3})
        assert flaky.status_code == 201, flaky.text
        with psycopg.connect(database_url, autocommit=True) as sql:
            wait_until(lambda: one(sql, "SELECT retry_count FROM background_tasks WHERE id = %s",
                                           (flaky.json()["task"]["id"],))[0] >= 1,
                       5, "the worker to record a failed attempt through its pool after the outage")
        made = http.post("/api/tasks", json={"taskType": "noop"})
        assert made.status_code == 201, made.text
        with psycopg.connect(database_url, autocommit=True) as sql:
            wait_until(lambda: one(sql, "SELECT count(*) FROM background_tasks WHERE status = 'completed'")[0] == 3,
                       30, "the worker to run tasks after the outage")
    assert len(answers) > 50
    worker.stop()
    api.stop()
    for name, proc in (("api", api), ("worker", worker)):
        out = proc.output()
        # The flaky actor's planned RuntimeError is an actor's exception: Dramatiq's traceback is right there.
        errors = [ln for ln in out.splitlines() if " ERROR " in ln]
        assert all("Failed to process message flaky(" in ln for ln in errors), (name, out[-4000:])
        assert out.count("Traceback") == len(errors) <= 1, (name, out[-4000:])
        warnings = [ln for ln in out.splitlines() if " WARNING " in ln]
        print(f"\n{name}: {len(warnings)} warning lines through a {OUTAGE_S:g} s outage")
        print("\n".join(warnings))
        assert len(warnings) <= 25, (name, "\n".join(warnings))
