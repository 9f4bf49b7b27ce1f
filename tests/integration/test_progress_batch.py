"""Async tasks' progress goes through one writer thread: the reports of the tasks waiting are one statement,
and each task still learns its own outcome (written, or cancelled meanwhile)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg

from bgtasks.errors import TaskCancelled
from bgtasks.settings import load_settings
from bgtasks.task_context import TaskContext
from bgtasks.worker import Runtime


def _held(runtime: Runtime, sql: psycopg.Connection[Any], n: int) -> list[TaskContext]:
    """n sleep tasks, claimed and begun by `runtime`, in id order."""
    sql.execute("INSERT INTO background_tasks (task_type, user_id) SELECT 'sleep', 'tester' "
                "FROM generate_series(1, %s)", (n,))
    rows = sorted(runtime.claimer.claim_if_due(), key=lambda r: r["id"])
    return [runtime.in_flight.begin(r["id"], r["attempt"]) for r in rows]


def test_reports_of_several_tasks_go_through_the_writer_and_each_learns_its_outcome(
        database_url: str, sql: psycopg.Connection[Any]) -> None:
    runtime = Runtime(load_settings(database_url=database_url), concurrency=3)
    closed = threading.Event()
    writer = threading.Thread(target=runtime.io.progress_writer.run, args=(closed,))
    writer.start()
    try:
        contexts = {ctx.id: ctx for ctx in _held(runtime, sql, 3)}
        ids = sorted(contexts)
        sql.execute("UPDATE background_tasks SET status = 'cancelled' WHERE id = %s", (ids[2],))

        async def report() -> tuple[BaseException | None, ...]:
            return await asyncio.gather(contexts[ids[0]].progress(40, "forty"), contexts[ids[1]].progress(50),
                                        contexts[ids[2]].progress(60), return_exceptions=True)

        outcomes = asyncio.run(report())
    finally:
        closed.set()
        writer.join()
        runtime.close()
    assert list(outcomes[:2]) == [None, None]
    assert isinstance(outcomes[2], TaskCancelled)
    assert contexts[ids[2]].cancelled.is_set()
    got = {r["id"]: (r["progress"], r["description"]) for r in sql.execute(
        "SELECT id, progress, description FROM background_tasks WHERE id = ANY(%s)", (ids,)).fetchall()}
    assert got == {ids[0]: (40, "forty"), ids[1]: (50, None), ids[2]: (0, None)}


def test_a_later_report_supersedes_one_not_yet_written(database_url: str, sql: psycopg.Connection[Any]) -> None:
    runtime = Runtime(load_settings(database_url=database_url), concurrency=1)
    try:
        [ctx] = _held(runtime, sql, 1)
        writer = runtime.io.progress_writer
        first, second = writer.submit(ctx, 10, "ten"), writer.submit(ctx, 20, "twenty")  # no thread yet
        closed = threading.Event()
        closed.set()
        writer.run(closed)  # closed at once: only its last flush runs, with both waiting
        assert (first.result(timeout=10), second.result(timeout=10)) == ("ok", "ok")
    finally:
        runtime.close()
    assert sql.execute("SELECT progress, description FROM background_tasks WHERE id = %s",
                       (ctx.id,)).fetchone() == {"progress": 20, "description": "twenty"}
