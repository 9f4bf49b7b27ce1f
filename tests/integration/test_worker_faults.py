"""Database faults as a worker's actors see them: progress reports are best effort and never fail an actor."""

from __future__ import annotations

from typing import Any

import psycopg

from bgtasks.settings import load_settings
from bgtasks.worker import Runtime


def test_progress_survives_a_terminated_pooled_connection(database_url: str,
                                                          sql: psycopg.Connection[Any]) -> None:
    [task_id] = [r["id"] for r in sql.execute(
        "INSERT INTO background_tasks (task_type, user_id) VALUES ('sleep', 'tester') RETURNING id").fetchall()]
    runtime = Runtime(load_settings(database_url=database_url), concurrency=1)
    try:
        [row] = runtime.claim_if_due()
        ctx = runtime.begin(task_id, row["attempt"])
        ctx.progress_sync(10, "warming up")
        sql.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ctx.progress_sync(50, "half way")  # the pooled connection is dead: retried, never raised
    finally:
        runtime._drop_claim_connection()
        runtime.pool.close()
    assert sql.execute("SELECT progress, description FROM background_tasks WHERE id = %s",
                       (task_id,)).fetchone() == {"progress": 50, "description": "half way"}
