"""The broker's Python face: `actor.send(**payload)` becomes a task row (through the enqueue_task() SQL
function operators use too), delayed when Dramatiq asks for a delay."""

from __future__ import annotations

from typing import Any

import dramatiq
import psycopg

from service.broker import QUEUE, PostgresBroker
from service.settings import load_settings
from service.worker import Runtime


def test_send_creates_a_task_row_and_a_delay_becomes_run_at(database_url: str,
                                                             sql: psycopg.Connection[Any]) -> None:
    runtime = Runtime(load_settings(database_url=database_url), concurrency=1)
    try:
        broker = PostgresBroker(runtime, middleware=[])
        message = dramatiq.Message(queue_name=QUEUE, actor_name="sleep", args=(), kwargs={"seconds": 1},
                                   options={})
        sent = broker.enqueue(message, delay=60_000)
        row = sql.execute("SELECT task_type, user_id, payload, status::text, "
                          "extract(epoch FROM run_at - created_at) AS delay FROM background_tasks WHERE id = %s",
                          (sent.message_id,)).fetchone()
    finally:
        runtime.pool.close()
    assert row is not None
    assert (row["task_type"], row["user_id"], row["payload"], row["status"]) == (
        "sleep", "system", {"seconds": 1}, "pending")
    assert 59 <= float(row["delay"]) <= 61
