"""The broker's Python face: `actor.send(**payload)` becomes a task row (through the enqueue_task() SQL
function operators use too), delayed when Dramatiq asks for a delay."""

from __future__ import annotations

from typing import Any

import dramatiq
import psycopg
import pytest
from dramatiq.broker import MessageProxy

from bgtasks.broker import QUEUE, PostgresBroker
from bgtasks.errors import TaskCancelled
from bgtasks.middleware.outcome import classify
from bgtasks.settings import load_settings
from bgtasks.worker import Runtime


def test_send_creates_a_task_row_and_a_delay_becomes_run_at(database_url: str,
                                                             sql: psycopg.Connection[Any]) -> None:
    runtime = Runtime(load_settings(database_url=database_url), concurrency=1)
    try:
        broker = PostgresBroker(runtime.claimer, runtime.outcomes, runtime.in_flight, runtime.enqueue, middleware=[])
        message: dramatiq.Message[Any] = dramatiq.Message(queue_name=QUEUE, actor_name="sleep", args=(), kwargs={"seconds": 1},
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


def test_a_message_of_an_earlier_attempt_neither_runs_nor_drops_the_current_one(database_url: str,
                                                                               sql: psycopg.Connection[Any]) -> None:
    """A task claimed ahead, handed back and claimed again by the same worker leaves an old message in
    Dramatiq's queue: it must not run, and its failure must not drop what the worker holds for the new attempt."""
    [task_id] = [r["id"] for r in sql.execute(
        "INSERT INTO background_tasks (task_type, user_id) VALUES ('noop', 'tester') RETURNING id").fetchall()]
    runtime = Runtime(load_settings(database_url=database_url), concurrency=2)
    try:
        rows = runtime.claimer.claim_if_due()
        assert [(r["id"], r["attempt"]) for r in rows] == [(task_id, 1)]
        with pytest.raises(TaskCancelled):
            runtime.in_flight.begin(task_id, 0)
        old = MessageProxy(dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(task_id, 0), kwargs={},
                                            options={"attempt": 0}, message_id=task_id))
        old.options["bgtasks_failure"] = classify(TaskCancelled("handed back"))
        runtime.outcomes.finish_failed(old)
        assert runtime.in_flight.records[task_id].attempt == 1
        assert runtime.in_flight.begin(task_id, 1).id == task_id
    finally:
        runtime.claimer.drop_connection()
        runtime.pool.close()
    assert sql.execute("SELECT status::text FROM background_tasks WHERE id = %s", (task_id,)).fetchone() == {
        "status": "processing"}
