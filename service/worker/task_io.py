"""What a running task writes besides its outcome: progress (best effort, never failing the actor) and live
output. The `TaskIO` every TaskContext is given: these writes, the shared pool, the settings, the fence."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..fencing import CallDeadlines
from ..settings import Settings
from ..store import worker as store
from ..task_context import TaskContext
from .conn import connect
from .leases import Leases

log = logging.getLogger("bgtasks.worker")


Report = tuple[TaskContext, int, str | None]  # a task's context, percent, description


class ProgressWriter:
    """The progress reports of async tasks, written by one thread in batches (the latest report of a task
    supersedes one not yet written; both of its callers get the written one's outcome)."""

    def __init__(self, write: Callable[[list[Report]], dict[str, str | None]]) -> None:
        self.write = write
        self.running = False
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Report, list[Future[str | None]]]] = {}
        self._ready = threading.Event()

    def submit(self, ctx: TaskContext, percent: int, description: str | None) -> Future[str | None]:
        future: Future[str | None] = Future()
        with self._lock:
            waiting = self._pending.get(ctx.id)
            self._pending[ctx.id] = ((ctx, percent, description), [*(waiting[1] if waiting else []), future])
        self._ready.set()
        return future

    def run(self, closed: threading.Event) -> None:
        self.running = True
        try:
            while not closed.is_set():
                if self._ready.wait(0.2):
                    self._ready.clear()
                    self._flush()
        finally:
            self.running = False
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            outcome = self.write([report for report, _ in batch.values()])
        except Exception as exc:  # never leave an actor waiting
            log.warning("progress of %s tasks dropped (%s: %s)", len(batch), type(exc).__name__, exc)
            outcome = {tid: "dropped" for tid in batch}
        for tid, (_, futures) in batch.items():
            for f in futures:
                f.set_result(outcome.get(tid, "dropped"))


class WorkerTaskIO:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any], leases: Leases, deadlines: CallDeadlines,
                 connect_args: dict[str, Any]) -> None:
        self.settings = settings
        self.pool = pool
        self.leases = leases
        self.deadlines = deadlines
        self.connect_args = connect_args
        self.progress_writer = ProgressWriter(self.write_progress)

    def fence_overdue(self) -> None:
        self.leases.fence_overdue()

    def report_progress(self, ctx: TaskContext, percent: int, description: str | None) -> str | None:
        """Write a progress report: "ok"; "dropped" (the database could not be reached, or the report was
        superseded: the task was cancelled or fenced meanwhile); else the task's status (None: deleted),
        when this attempt no longer holds it."""
        return self.write_progress([(ctx, percent, description)])[ctx.id]

    async def report_progress_async(self, ctx: TaskContext, percent: int, description: str | None) -> str | None:
        """The same from the event loop: through the progress writer (one statement for the reports of
        every task that waits), so a thousand awaiting tasks do not queue on threads and connections."""
        if not self.progress_writer.running:  # a runtime that was not started (tests drive it by hand)
            return await asyncio.to_thread(self.report_progress, ctx, percent, description)
        return await asyncio.wrap_future(self.progress_writer.submit(ctx, percent, description))

    def write_progress(self, reports: list[Report]) -> dict[str, str | None]:
        """Write reports of several tasks in one statement; each task's outcome as `report_progress` says.
        A failed write is retried once on a fresh connection: a pooled connection the server terminated
        must not fail the actors."""
        self.leases.fence_overdue()
        out: dict[str, str | None] = {ctx.id: "dropped" for ctx, _, _ in reports}
        live = [(ctx, percent, description) for ctx, percent, description in reports if not ctx.cancelled.is_set()]
        if not live:
            return out
        rows = [(ctx.id, ctx.attempt, max(0, min(100, percent)), description) for ctx, percent, description in live]
        error = "?"
        for fresh in (False, True):
            try:
                if fresh:
                    with connect(**{**self.connect_args, "timeout": 2}) as conn:
                        out.update(self._write_progress(conn, rows))
                else:
                    with self.pool.connection(timeout=2) as conn:
                        out.update(self._write_progress(conn, rows))
                return out
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                error = exc.__class__.__name__
        log.warning("progress of %s dropped: database unreachable (%s)",
                    f"task {rows[0][0]}" if len(rows) == 1 else f"{len(rows)} tasks", error)
        return out

    def _write_progress(self, conn: psycopg.Connection[Any],
                        rows: list[tuple[str, int, int, str | None]]) -> dict[str, str | None]:
        what = f"a progress write of task {rows[0][0]}" if len(rows) == 1 else f"progress writes of {len(rows)} tasks"
        with self.deadlines.within(conn, 2.0, what):
            kept = store.report_progress_batch(conn, rows)
            return {tid: "ok" if tid in kept else store.task_status(conn, tid) for tid, _, _, _ in rows}

    def write_output(self, ctx: TaskContext, text: str) -> None:
        """Append to a task's live output (append_task_output(): only while this attempt holds it). Best
        effort: an unreachable database drops the piece (the final result still carries the whole text)."""
        self.leases.fence_overdue()
        if ctx.cancelled.is_set():
            return
        try:
            with self.pool.connection(timeout=2) as conn, \
                    self.deadlines.within(conn, 2.0, f"an output write of task {ctx.id}"):
                store.append_task_output(conn, ctx.id, ctx.attempt, text, self.settings.bgtasks_output_max_chars)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            log.warning("live output of task %s dropped: database unreachable (%s)", ctx.id,
                        exc.__class__.__name__)
