"""What a running task writes besides its outcome: progress (best effort, never failing the actor) and live
output. The `TaskIO` every TaskContext is given: these writes, the shared pool, the settings, the fence."""

from __future__ import annotations

import logging
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


class WorkerTaskIO:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any], leases: Leases, deadlines: CallDeadlines,
                 connect_args: dict[str, Any]) -> None:
        self.settings = settings
        self.pool = pool
        self.leases = leases
        self.deadlines = deadlines
        self.connect_args = connect_args

    def fence_overdue(self) -> None:
        self.leases.fence_overdue()

    def report_progress(self, ctx: TaskContext, percent: int, description: str | None) -> str | None:
        """Write a progress report: "ok"; "dropped" (the database could not be reached, or the report was
        superseded: the task was cancelled or fenced meanwhile); else the task's status (None: deleted),
        when this attempt no longer holds it. A failed write is retried once on a fresh connection: a
        pooled connection the server terminated must not fail the actor."""
        error = "?"
        self.leases.fence_overdue()
        for fresh in (False, True):
            if ctx.cancelled.is_set():
                return "dropped"
            try:
                if fresh:
                    with connect(**{**self.connect_args, "timeout": 2}) as conn:
                        return self._write_progress(conn, ctx, percent, description)
                with self.pool.connection(timeout=2) as conn:
                    return self._write_progress(conn, ctx, percent, description)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                error = exc.__class__.__name__
        log.warning("progress of task %s dropped: database unreachable (%s)", ctx.id, error)
        return "dropped"

    def _write_progress(self, conn: psycopg.Connection[Any], ctx: TaskContext, percent: int,
                        description: str | None) -> str | None:
        with self.deadlines.within(conn, 2.0, f"a progress write of task {ctx.id}"):
            if store.report_progress(conn, ctx.id, ctx.attempt, percent, description):
                return "ok"
            return store.task_status(conn, ctx.id)

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
