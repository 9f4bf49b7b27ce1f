"""The worker process: Dramatiq threads over our Postgres broker, plus the runtime that owns connections,
capacity, leases and shutdown.

Threads and connections (a worker uses at most concurrency + 5 connections):
- Dramatiq's consumer thread claims (one dedicated connection) for free threads, and while the tasks are
  short (BGTASKS_CLAIM_AHEAD_MS) up to three tasks per thread ahead, so the next batch is in hand when threads
  free;
- Dramatiq's worker threads run actors; progress, failures and completions use the shared pool;
- the listener (dedicated connection, to the direct URL) LISTENs: new pending work wakes the consumer, a cancel interrupts the
  running actor, a settings change is seen at once; after a reconnect it re-checks everything it holds;
- the completer writes completions in batches, one statement each;
- the heartbeat (dedicated connection) extends leases, interrupts tasks whose lease was lost, and reaps
  expired leases (none within a grace period after an outage: docs/architecture.md);
- the scheduler (pool) creates the tasks of due cron schedules, twice a second;
- the fence thread stops actors whose lease could not be renewed in time and cuts off database calls that
  hang on a frozen network path (service/fencing.py).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
import psycopg
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import AsyncIO, TimeLimit
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from bgtasks import actors

from . import scheduler
from .broker import QUEUE, PostgresBroker
from .connections import Connections
from .connections import resolve as resolve_connections
from .errors import TaskCancelled
from .fencing import CallDeadlines, fence_margin
from .logs import outage_logger, quiet_driver_pools
from .middleware.cancellation import interrupt_thread
from .middleware.outcome import EXPECTED, Failure, Outcome, describe, json_result
from .retention import start_retention
from .settings import Settings
from .store import task_types as task_type_store
from .store import worker as store
from .task_context import TaskContext

log = outage_logger("bgtasks.worker")  # warnings repeat through an outage: throttled

CHANNEL_TASKS = "bgtasks_tasks"
CHANNEL_QUEUE = "bgtasks_queue"
FINISHED = frozenset({"completed", "error", "cancelled", "deleted"})
# Claiming ahead (short tasks only): up to CLAIM_AHEAD_PER_THREAD tasks per thread wait in the process, fetched
# up to CLAIM_BATCH_PER_THREAD per thread in one round trip, so one batch runs while the next is fetched. A
# task claimed ahead waits for a thread at most CLAIM_AHEAD_MAX_WAIT_S, then goes back to pending; a thread
# busy for longer than that also stops claiming ahead (what would wait behind it could wait long).
CLAIM_AHEAD_PER_THREAD = 3
CLAIM_BATCH_PER_THREAD = 2
CLAIM_AHEAD_MAX_WAIT_S = 0.2
# psycopg's pool retries a failed connection with a doubling delay (1, 2, 4 … s) until reconnect_timeout
# (default 300 s): after a 60 s outage it would wait up to a minute more, heartbeats and progress starved of
# connections while the database answers again. Giving an attempt up after 2 s lets the next caller that
# needs a connection start a new one at once: connections come back within a second of the database.
POOL_RECONNECT_S = 2.0


@dataclass
class InFlight:
    """A claimed task, from claim until its outcome is handed to the database."""

    task_id: str
    attempt: int
    context: TaskContext | None = None
    thread_id: int | None = None  # set when a thread starts it; None: claimed ahead, waiting for a thread
    interruptible: bool = False
    claimed_at: float = 0.0  # Runtime.clock()
    started_at: float | None = None
    lease_until: float = float("inf")  # Runtime.clock() by which this worker's lease surely ends
    fenced: bool = False  # its lease could not be renewed in time: stopped, never written for again


def _connect(url: str, timeout: int = 5, *, prepare: bool = True,
             name: str = "bgtasks worker") -> psycopg.Connection[Any]:
    """A dedicated connection; `prepare=False` through a transaction pooler (no server-side statements);
    `name` is its application_name (pg_stat_activity shows which worker a connection belongs to)."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=timeout,
                           application_name=name, **({} if prepare else {"prepare_threshold": None}))


class Runtime:
    """Everything the broker and the actors share in one worker process. Thread-safe."""

    def __init__(self, settings: Settings, concurrency: int, worker_id: str | None = None,
                 connections: Connections | None = None) -> None:
        self.settings = settings
        # DATABASE_URL for the pool, claims and completions (it may be a transaction pooler: then nothing
        # is prepared on them); the direct URL for LISTEN and retention's session lock.
        self.connections = connections or resolve_connections(settings)
        self.url = self.connections.url
        self.prepare = self.connections.prepare
        self.concurrency = concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.name = f"bgtasks worker {self.worker_id}"[:63]  # application_name of its connections
        self.lease_s = settings.bgtasks_lease_s
        quiet_driver_pools()
        self.clock: Callable[[], float] = time.monotonic  # leases and fencing (tests move it)
        self.fence_margin_s = fence_margin(self.lease_s, settings.heartbeat_s)
        self.deadlines = CallDeadlines(lambda: self.clock())
        self.to_release: list[tuple[str, int]] = []  # fenced attempts whose actor stopped: hand back
        self.pool = ConnectionPool(self.url, min_size=1, max_size=concurrency + 1, open=True,
                                   kwargs={"autocommit": True, "row_factory": dict_row,
                                           "application_name": self.name,
                                           **({} if self.prepare else {"prepare_threshold": None})},
                                   check=ConnectionPool.check_connection, name="bgtasks-worker",
                                   reconnect_timeout=POOL_RECONNECT_S)
        self.lock = threading.Lock()
        self.in_flight: dict[str, InFlight] = {}
        self.wake = threading.Event()
        self.wake.set()  # claim once at start
        self.stopping = threading.Event()
        self.idle = threading.Condition(self.lock)
        self.poll_interval_s = 5.0
        self.claim_ahead_s = settings.bgtasks_claim_ahead_ms / 1000
        self.avg_run_s: float | None = None  # moving average of this worker's task run times; None: no evidence
        self.starved = False
        self.next_poll = 0.0
        self._claim_conn: psycopg.Connection[Any] | None = None
        # The latest claim time the database told this worker of; after a claim whose answer was lost (the
        # connection died, perhaps after the commit) what it took later goes back to pending first.
        self.claimed_up_to = datetime.min.replace(tzinfo=UTC)
        self.claim_answer_lost = False
        self.completions: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        self.claim_rounds = 0  # round trips the consumer started (the completer leaves completions to them)
        self._threads: list[threading.Thread] = []
        self.events: list[Callable[[str, dict[str, Any]], None]] = []  # test hooks: (event, fields)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        with self.pool.connection() as conn:
            store.register_worker(conn, self.worker_id, socket.gethostname(), os.getpid(), self.concurrency)
            # The API validates and lists from what workers publish: it need not import the application.
            task_type_store.publish_task_types(conn, self.worker_id, actors.TASK_TYPES.values())
            self.poll_interval_s = store.queue_settings(conn)["poll_interval"] / 1000
        for target, name in ((self._listen, "listener"), (self._complete_loop, "completer"),
                             (self._heartbeat_loop, "heartbeat"), (self._schedule_loop, "scheduler"),
                             (self._fence_loop, "fence")):
            t = threading.Thread(target=target, name=f"bgtasks-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        # Retention (service/retention.py): one worker at a time, its own connection while a pass runs.
        self._threads += start_retention(self.connections.direct, self.settings.bgtasks_retention_days,
                                         self.stopping)

    def close(self) -> None:
        self.stopping.set()
        self.wake.set()
        self._flush_completions(final=True)
        try:
            with self.pool.connection(timeout=5) as conn:
                store.worker_stopped(conn, self.worker_id)
        except Exception as exc:
            log.warning("could not mark worker %s stopped (%s: %s)", self.worker_id, type(exc).__name__, exc)
        for t in self._threads:
            t.join(timeout=2)
        if self._claim_conn is not None:
            self._claim_conn.close()
        self.pool.close()

    def _emit(self, event: str, **fields: Any) -> None:
        for hook in self.events:
            hook(event, fields)

    # ------------------------------------------------------------------ claiming (consumer thread)
    def _lookahead(self, now: float) -> int:
        """How many tasks to hold beyond the threads: CLAIM_AHEAD_PER_THREAD per thread while tasks are
        short, else none. Caller holds the lock."""
        # Under max_concurrent_tasks a task claimed ahead counts as running (the claim enforces the limit).
        if self.avg_run_s is None or self.avg_run_s >= self.claim_ahead_s:
            return 0
        if any(r.started_at is not None and now - r.started_at > CLAIM_AHEAD_MAX_WAIT_S
               for r in self.in_flight.values()):
            return 0
        return CLAIM_AHEAD_PER_THREAD * self.concurrency

    def free_capacity(self) -> int:
        with self.lock:
            return self._free(self._lookahead(time.monotonic()))

    def _free(self, lookahead: int) -> int:
        """Places not taken: the threads plus the room ahead, less what is held. Caller holds the lock."""
        return self.concurrency + lookahead - len(self.in_flight)

    def _claim_size(self, now: float) -> int:
        """How many to claim now: the free places (threads, and room ahead while tasks are short). Claiming
        ahead, batches of up to CLAIM_BATCH_PER_THREAD per thread: one batch runs while the next is fetched.
        While tasks claimed ahead still wait for a thread, claim only once half the room ahead is free (a
        round trip for one task would cost more than it saves)."""
        with self.lock:
            lookahead = self._lookahead(now)
            free = self._free(lookahead)
            waiting = any(r.thread_id is None for r in self.in_flight.values())
        if lookahead:
            free = min(free, CLAIM_BATCH_PER_THREAD * self.concurrency)
        if waiting and free < max(1, lookahead // 2):
            return 0
        return free

    def _hand_back_stale(self, now: float) -> None:
        """Tasks claimed ahead that no thread started within CLAIM_AHEAD_MAX_WAIT_S go back to pending, for
        any worker to take. Their messages stay in Dramatiq's queue; begin() then finds them gone."""
        with self.lock:
            stale = [r for r in self.in_flight.values()
                     if r.thread_id is None and now - r.claimed_at > CLAIM_AHEAD_MAX_WAIT_S]
            for r in stale:
                del self.in_flight[r.task_id]
            if stale:
                self.avg_run_s = None  # tasks are not short after all: no claiming ahead until they prove it
        if not stale:
            return
        try:
            conn = self._claim_connection()
            for r in stale:
                store.release_task(conn, r.task_id, r.attempt)
        except psycopg.Error as exc:  # their leases run out and the reaper takes them back
            log.warning("could not hand back tasks claimed ahead (%s)", exc.__class__.__name__)
            self._drop_claim_connection()
        log.info("handed back %s task(s) claimed ahead that no thread started", len(stale))
        for r in stale:
            self._emit("released", task_id=r.task_id, attempt=r.attempt)

    def claim_if_due(self) -> list[dict[str, Any]]:
        """Claim for the free threads when woken (NOTIFY, a finished task) or when the poll interval ran out."""
        if self.stopping.is_set():
            return []
        self.fence_overdue()  # a process woken from SIGSTOP stops what it no longer holds, first
        now = time.monotonic()
        if self.claim_ahead_s:
            self._hand_back_stale(now)
        polling = now >= self.next_poll
        if not (self.wake.is_set() or polling):
            return []
        self.wake.clear()
        free = self._claim_size(now)
        if free <= 0:
            return []
        # Until this claim proves otherwise, a task finishing anywhere should wake us (set before the claim:
        # a finish committed while it runs must not be missed).
        self.starved = True
        finished = self._take_completions()
        self.claim_rounds += 1
        try:
            conn = self._claim_connection()
            if self.claim_answer_lost:
                lost = store.release_lost_claims(conn, self.worker_id, self.claimed_up_to)
                self.claim_answer_lost = False
                if lost:
                    log.info("handed back %s task(s) claimed while the connection died (never started here)",
                             len(lost))
            sent = self.clock()
            # Completions ride along with the claim: one round trip and one commit for both.
            # A claim that takes longer than this would be fenced the moment it returned; cutting it off frees
            # the consumer thread from a frozen network path (its tasks, if it committed, are reaped).
            with self.deadlines.within(conn, self.lease_s - self.fence_margin_s, "a claim"):
                rows, due_in = store.complete_and_claim(conn, finished, self.worker_id, free, self.lease_s)
            if polling:
                store.mark_polled(conn, int(self.poll_interval_s * 1000))
                self.next_poll = now + self.poll_interval_s
            if len(rows) < free:
                self.next_poll = self._next_poll_time(now, due_in)
        except psycopg.Error as exc:
            for item in finished:
                self.completions.put(item)  # the completer writes them once the database answers
            self.claim_answer_lost = True  # it may have committed: hand back what it took, next time
            log.warning("claim failed (%s); retrying shortly", exc.__class__.__name__)
            self._drop_claim_connection()
            self.next_poll = now + 0.5
            return []
        if len(rows) == free:
            self.wake.set()  # there may be more: claim again as soon as threads free up
        # Fewer than asked: the queue is empty, or a limit (global, per user, per type) held us back. Then
        # a task finishing anywhere may make room, so the listener wakes us on finished tasks too.
        self.starved = len(rows) < free
        claimed_at = time.monotonic()
        if rows:
            self.claimed_up_to = max(self.claimed_up_to, max(r["started_at"] for r in rows))
        with self.lock:
            for r in rows:
                self.in_flight[r["id"]] = InFlight(r["id"], r["attempt"], self._context(r), claimed_at=claimed_at,
                                                   lease_until=sent + self.lease_s)
        for r in rows:
            self._emit("claimed", task_id=r["id"], attempt=r["attempt"])
        return rows

    def _take_completions(self, at_most: int = 500) -> list[tuple[str, int, Any]]:
        items: list[tuple[str, int, Any]] = []
        while len(items) < at_most:
            try:
                items.append(self.completions.get_nowait())
            except queue.Empty:
                break
        return items

    def _next_poll_time(self, now: float, due_in: float | None) -> float:
        """Poll again at the poll interval, or earlier when a delayed or retried task falls due."""
        nxt = now + self.poll_interval_s
        if due_in is not None:
            nxt = min(nxt, now + max(0.0, due_in) + 0.002)
        return nxt

    def _claim_connection(self) -> psycopg.Connection[Any]:
        if self._claim_conn is None or self._claim_conn.closed:
            self._claim_conn = _connect(self.url, prepare=self.prepare, name=self.name)
        return self._claim_conn

    def _drop_claim_connection(self) -> None:
        if self._claim_conn is not None:
            try:
                self._claim_conn.close()
            finally:
                self._claim_conn = None

    def wait_for_work(self, timeout_s: float) -> None:
        """Sleep until woken, the next poll, or the timeout. With every thread busy, only a finished task
        (which sets `wake`) can make a claim useful, so the poll clock is not watched then. (Tasks claimed
        ahead and still waiting are checked within Dramatiq's worker timeout, 100 ms: `_hand_back_stale`.)"""
        if self.free_capacity() > 0 and not self.stopping.is_set():
            timeout_s = min(timeout_s, max(0.0, self.next_poll - time.monotonic()))
        self.wake.wait(timeout_s)

    def _context(self, row: dict[str, Any]) -> TaskContext:
        return TaskContext(
            id=row["id"], task_type=row["task_type"], attempt=row["attempt"], user_id=row["user_id"],
            payload=row["payload"] or {}, project_id=row["project_id"], project_name=row["project_name"],
            project_path=row["project_path"], retry_count=row["retry_count"], max_retries=row["max_retries"],
            runtime=self,
        )

    # ------------------------------------------------------------------ running (worker threads)
    def begin(self, task_id: str, attempt: int) -> TaskContext:
        with self.lock:
            rec = self.in_flight.get(task_id)
            if rec is None or rec.attempt != attempt:
                raise TaskCancelled(f"task {task_id} was handed back before it started")
            assert rec.context is not None
            ctx = rec.context
            if ctx.cancelled.is_set():  # cancelled while it waited for a thread
                raise TaskCancelled(ctx.cancel_reason or f"task {task_id} was cancelled")
            rec.thread_id = threading.get_ident()
            rec.interruptible = True
            rec.started_at = time.monotonic()
        self._emit("started", task_id=task_id, attempt=rec.attempt)
        return ctx

    def end(self, task_id: str) -> None:
        with self.lock:
            rec = self.in_flight.get(task_id)
            if rec is not None:
                rec.interruptible = False
                if rec.started_at is not None:
                    ran = time.monotonic() - rec.started_at
                    self.avg_run_s = ran if self.avg_run_s is None else 0.7 * self.avg_run_s + 0.3 * ran

    def interrupt(self, task_id: str, reason: str) -> None:
        """Stop the actor running task_id, if any: flag it (cooperative) and interrupt its thread."""
        with self.lock:
            rec = self.in_flight.get(task_id)
            if rec is None or rec.context is None:
                return
            rec.context.cancel_reason = reason
            rec.context.cancelled.set()
            if rec.interruptible and rec.thread_id is not None:
                interrupt_thread(rec.thread_id)
        log.info("task %s interrupted: %s", task_id, reason)
        self._emit("interrupted", task_id=task_id, reason=reason)

    def _forget(self, task_id: str, attempt: int) -> InFlight | None:
        """Drop what is held for this attempt of the task. A message of an earlier attempt (claimed ahead,
        handed back, claimed again by this worker) must not drop the record of the later one."""
        with self.lock:
            rec = self.in_flight.get(task_id)
            if rec is not None and rec.attempt == attempt:
                del self.in_flight[task_id]
            else:
                rec = None
            if not self.in_flight:
                self.idle.notify_all()
        self.wake.set()  # a thread is free: claim
        return rec

    def finish_ok(self, message: Any) -> None:
        attempt = int(message.options["attempt"])
        rec = self._forget(message.message_id, attempt)
        if self._fenced_off(rec):
            return
        if rec is not None and rec.context is not None and rec.context.cancelled.is_set():
            return  # cancelled while finishing: never write completed over it
        self.completions.put((message.message_id, attempt, json_result(message.options.get("bgtasks_result"))))
        self._emit("finished", task_id=message.message_id, attempt=attempt, ok=True)

    def finish_failed(self, message: Any) -> None:
        attempt = int(message.options["attempt"])
        rec = self._forget(message.message_id, attempt)
        failure: Failure = message.options.get("bgtasks_failure") or Failure(
            "ActorNotFound", f"no actor for task type {message.actor_name!r} on worker {self.worker_id}",
            permanent=True)
        if self._fenced_off(rec):
            pass  # whatever it raised: nothing is written for a fenced attempt (its interrupt was logged)
        elif failure.write:
            outcome = self._with_retry(lambda conn: self._record_failure(conn, message.message_id, attempt, failure))
            # One line per failure, however many: the traceback is kept with the attempt (the task's detail
            # shows it) and logged at DEBUG only.
            log.info("task %s attempt %s failed: %s -> %s", message.message_id, attempt,
                     describe(failure).splitlines()[0][:500] if failure.message else failure.error_type, outcome)
            if failure.traceback and log.isEnabledFor(logging.DEBUG):
                log.debug("task %s attempt %s traceback:\n%s", message.message_id, attempt, failure.traceback)
        elif rec is None or rec.context is None or not rec.context.cancel_reason:
            # The actor found out itself (a progress write refused: cancelled, deleted, fenced off); an
            # interrupt was logged when it was sent.
            log.info("task %s attempt %s stopped, nothing written: %s", message.message_id, attempt,
                     failure.message)
        self._emit("finished", task_id=message.message_id, attempt=attempt, ok=False,
                   error=failure.error_type)

    def _fenced_off(self, rec: InFlight | None) -> bool:
        """A fenced attempt's actor has stopped: hand the task back (without counting a retry) once the
        database answers, and write nothing else for it."""
        if rec is None or not rec.fenced:
            return False
        with self.lock:
            self.to_release.append((rec.task_id, rec.attempt))
        self._emit("fenced-stopped", task_id=rec.task_id, attempt=rec.attempt)
        return True

    # ------------------------------------------------------------------ fencing (fence thread)
    def fence_overdue(self) -> list[str]:
        """Stop the actors of leases that end within the fence margin (no renewal got through in time),
        before the database could give their tasks to another worker; returns their task ids. Every thread
        calls it before it writes for a task, so a process woken from SIGSTOP stops first."""
        now = self.clock()
        with self.lock:
            due = [r for r in self.in_flight.values()
                   if not r.fenced and now >= r.lease_until - self.fence_margin_s]
            for r in due:
                r.fenced = True
        for r in due:
            self.interrupt(r.task_id, f"fenced: its lease ends within {self.fence_margin_s:g}s and no renewal "
                                      "reached the database; handed back once it answers")
        return [r.task_id for r in due]

    def _fence_loop(self) -> None:
        """Every 50 ms: fence overdue leases, and cut off database calls hanging past their deadline."""
        while not self.stopping.wait(0.05):
            self.fence_overdue()
            self.deadlines.enforce()

    def _release_fenced(self, conn: psycopg.Connection[Any]) -> None:
        with self.lock:
            todo, self.to_release = self.to_release, []
        try:
            while todo:
                task_id, attempt = todo[0]
                released = store.release_task(conn, task_id, attempt)
                todo.pop(0)
                log.info("fenced task %s attempt %s %s", task_id, attempt,
                         "handed back to pending" if released else "was taken back meanwhile: nothing to do")
                self._emit("released", task_id=task_id, attempt=attempt)
        finally:
            if todo:
                with self.lock:
                    self.to_release[:0] = todo

    def _record_failure(self, conn: psycopg.Connection[Any], task_id: str, attempt: int, failure: Failure) -> Any:
        """A provider's rate limit waits without spending a retry (bounded by BGTASKS_RATE_LIMIT_MAX_WAIT_S);
        every other failure is fail_task()'s: retry with backoff, or error."""
        # One transaction: a reader never sees the failed attempt without its traceback.
        with conn.transaction():
            if failure.rate_limited:
                status = store.postpone_rate_limited(conn, task_id, attempt, failure.error_type,
                                                     failure.message[:4000], failure.retry_after_s,
                                                     self.settings.bgtasks_rate_limit_max_wait_s)
            else:
                status = store.fail_task(conn, task_id, attempt, failure.error_type, failure.message[:4000],
                                         failure.permanent, failure.retry_after_s)
            if status is not None and failure.traceback:
                store.record_attempt_traceback(conn, task_id, attempt, failure.traceback)
        return status

    def release(self, task_id: str, attempt: int) -> None:
        """Hand a task back to pending without counting a retry (shutdown)."""
        self._forget(task_id, attempt)
        self._with_retry(lambda conn: store.release_task(conn, task_id, attempt), attempts=3)
        self._emit("released", task_id=task_id, attempt=attempt)

    def _with_retry(self, fn: Callable[[psycopg.Connection[Any]], Any], attempts: int = 60) -> Any:
        """A write that must not be lost to a passing database outage (restart, failover)."""
        delay = 0.1
        for i in range(attempts):
            try:
                with self.pool.connection(timeout=10) as conn, self.deadlines.within(conn, 30.0, "a write"):
                    return fn(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if i == attempts - 1:
                    log.error("giving up a write after %s attempts: %s", attempts, exc)
                    return None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        return None

    def report_progress(self, ctx: TaskContext, percent: int, description: str | None) -> str | None:
        """Write a progress report: "ok"; "dropped" (the database could not be reached, or the report was
        superseded: the task was cancelled or fenced meanwhile); else the task's status (None: deleted),
        when this attempt no longer holds it. A failed write is retried once on a fresh connection: a
        pooled connection the server terminated must not fail the actor."""
        error = "?"
        self.fence_overdue()
        for fresh in (False, True):
            if ctx.cancelled.is_set():
                return "dropped"
            try:
                if fresh:
                    with _connect(self.url, timeout=2, prepare=self.prepare, name=self.name) as conn:
                        return self._write_progress_within(conn, ctx, percent, description)
                with self.pool.connection(timeout=2) as conn:
                    return self._write_progress_within(conn, ctx, percent, description)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                error = exc.__class__.__name__
        log.warning("progress of task %s dropped: database unreachable (%s)", ctx.id, error)
        return "dropped"

    def _write_progress_within(self, conn: psycopg.Connection[Any], ctx: TaskContext, percent: int,
                               description: str | None) -> str | None:
        with self.deadlines.within(conn, 2.0, f"a progress write of task {ctx.id}"):
            return self._write_progress(conn, ctx, percent, description)

    @staticmethod
    def _write_progress(conn: psycopg.Connection[Any], ctx: TaskContext, percent: int,
                        description: str | None) -> str | None:
        if store.report_progress(conn, ctx.id, ctx.attempt, percent, description):
            return "ok"
        return store.task_status(conn, ctx.id)

    def write_output(self, ctx: TaskContext, text: str) -> None:
        """Append to a task's live output (append_task_output(): only while this attempt holds it). Best
        effort: an unreachable database drops the piece (the final result still carries the whole text)."""
        self.fence_overdue()
        if ctx.cancelled.is_set():
            return
        try:
            with self.pool.connection(timeout=2) as conn, \
                    self.deadlines.within(conn, 2.0, f"an output write of task {ctx.id}"):
                store.append_task_output(conn, ctx.id, ctx.attempt, text, self.settings.bgtasks_output_max_chars)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            log.warning("live output of task %s dropped: database unreachable (%s)", ctx.id,
                        exc.__class__.__name__)

    def enqueue(self, task_type: str, payload: dict[str, Any], *, delay_ms: int | None, user_id: str) -> str:
        with self.pool.connection() as conn:
            return store.enqueue_task(conn, task_type, user_id, payload, (delay_ms or 0) / 1000)

    def wait_idle(self, timeout_s: float | None) -> bool:
        with self.lock:
            return self.idle.wait_for(lambda: not self.in_flight, timeout=timeout_s)

    # ------------------------------------------------------------------ completer thread
    def _complete_loop(self) -> None:
        while not self.stopping.is_set():
            self._flush_completions()

    def _flush_completions(self, final: bool = False) -> None:
        try:
            first = self.completions.get(timeout=0.05 if final else 0.2)
        except queue.Empty:
            return
        if not final and not self.stopping.is_set() and self.free_capacity() > 0:
            # The consumer is about to claim for the thread this task freed and takes completions along;
            # write them here only if it has not started a round trip within a few milliseconds.
            rounds = self.claim_rounds
            self.completions.put(first)
            time.sleep(0.005)
            if self.claim_rounds != rounds:
                return  # it is claiming: what is queued rides with its next round trip
            batch = self._take_completions()
            if not batch:
                return
        else:
            batch = [first, *self._take_completions(499)]
        done = self._with_retry(lambda conn: store.complete_tasks(conn, batch), attempts=600)
        if self.starved:
            self.wake.set()  # rows just left `processing`: room under a global limit, without the NOTIFY trip
        if done is not None and len(done) < len(batch):
            lost = [tid for tid, _, _ in batch if tid not in done]
            log.info("not completed (cancelled or taken back meanwhile): %s", ", ".join(lost[:20]))
        if final and not self.completions.empty():
            self._flush_completions(final=True)

    # ------------------------------------------------------------------ listener thread
    def _listen(self) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                with _connect(self.connections.direct, name=self.name) as conn:
                    conn.execute(f"LISTEN {CHANNEL_TASKS}")
                    conn.execute(f"LISTEN {CHANNEL_QUEUE}")
                    backoff = 0.1
                    self._resync(conn)
                    probed = time.monotonic()
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._on_notify(note.channel, note.payload)
                        if time.monotonic() - probed >= self.settings.heartbeat_s:
                            # A silent network never ends a LISTEN: ask, and cut it off when no answer comes.
                            with self.deadlines.within(conn, max(self.settings.heartbeat_s, 1.0), "LISTEN"):
                                conn.execute("SELECT 1")
                            probed = time.monotonic()
            except psycopg.Error as exc:
                if self.stopping.is_set():
                    return
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc.__class__.__name__, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _resync(self, conn: psycopg.Connection[Any]) -> None:
        """After (re)connecting: notifications may have been missed. Re-read the poll interval, claim again,
        and re-check our tasks."""
        self.poll_interval_s = store.queue_settings(conn)["poll_interval"] / 1000
        self.wake.set()
        with self.lock:
            held = list(self.in_flight)
        if held:
            present = store.task_statuses(conn, held)
            for tid in held:
                status = present.get(tid)
                if status != "processing":
                    self.interrupt(tid, f"task is {status or 'deleted'}")

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == CHANNEL_QUEUE:
            try:
                self.poll_interval_s = json.loads(payload)["poll_interval"] / 1000
            except (ValueError, KeyError, TypeError):
                pass
            self.next_poll = 0.0
            self.wake.set()
            return
        try:
            entries = json.loads(payload)
        except ValueError:
            return
        for e in entries:
            status = e.get("status")
            if status == "pending":
                self.wake.set()
            elif status in FINISHED:
                if self.starved:
                    self.wake.set()  # room may have freed under a limit
                if e.get("id") in self.in_flight:  # our own outcomes leave in_flight before they are written
                    self.interrupt(e["id"], f"task was {status}")

    # ------------------------------------------------------------------ heartbeat thread
    def _heartbeat_loop(self) -> None:
        """Every heartbeat interval (a third of the lease): extend the leases held and stamp the worker row.
        Every reap interval: take back tasks whose lease ran out. Only the first writes (a commit each), so
        it runs no oftener than the lease needs; after a failed heartbeat (an outage) it tries again every
        tick, so leases are renewed within a tick of the database coming back (the reapers' grace period,
        `Settings.reap_grace_s`, waits for that). Its own connection: a pool that backed off reconnecting
        through an outage must not delay the renewal."""
        next_reap = next_beat = 0.0
        interval = self.settings.heartbeat_s
        # A renewal still unanswered at the fence point is of no use: cut it off then and reconnect.
        patience = self.lease_s - self.fence_margin_s
        conn: psycopg.Connection[Any] | None = None
        while not self.stopping.wait(min(interval, self.settings.bgtasks_reap_interval_s)):
            try:
                if conn is None or conn.closed:
                    conn = _connect(self.url, prepare=self.prepare, name=self.name)
                if time.monotonic() >= next_beat:
                    with self.deadlines.within(conn, patience, "a heartbeat"):
                        self._beat(conn)
                    next_beat = time.monotonic() + interval
                if time.monotonic() >= next_reap:
                    with self.deadlines.within(conn, patience, "the lease reaper"):
                        n = store.reap_expired_leases(conn, self.settings.reap_grace_s)
                    if n:
                        log.info("took back %s task(s) whose worker stopped heartbeating", n)
                    next_reap = time.monotonic() + self.settings.bgtasks_reap_interval_s
            except Exception as exc:  # keep beating through outages
                log.warning("heartbeat failed: %s", exc)
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()

    def _beat(self, conn: psycopg.Connection[Any]) -> None:
        """Fence what is overdue, hand back what was fenced, renew the rest, stamp the worker row."""
        self.fence_overdue()
        self._release_fenced(conn)
        with self.lock:
            held = [tid for tid, r in self.in_flight.items() if not r.fenced]
        if held:
            sent = self.clock()
            kept = store.extend_leases(conn, self.worker_id, held, self.lease_s)
            with self.lock:
                for tid in kept:
                    rec = self.in_flight.get(tid)
                    if rec is not None and not rec.fenced:
                        rec.lease_until = sent + self.lease_s
            for tid in set(held) - kept:
                with self.lock:
                    still = tid in self.in_flight
                if still:
                    self.interrupt(tid, "lease lost: the task is no longer held by this worker")
        store.worker_heartbeat(conn, self.worker_id, self.settings.outage_s)

    # ------------------------------------------------------------------ scheduler thread
    def _schedule_loop(self) -> None:
        """Create the tasks of due cron schedules (service/scheduler.py); any number of workers may run it."""
        while not self.stopping.wait(scheduler.TICK_S):
            try:
                with self.pool.connection(timeout=5) as conn:
                    scheduler.run_due_schedules(conn)
            except Exception as exc:  # keep ticking through outages
                log.warning("scheduler tick failed: %s", exc)


# ---------------------------------------------------------------------- actors and the process
class _SaidElsewhere(logging.Filter):
    """Dramatiq lines that say nothing we do not: return values "discarded" without its Results middleware
    (ours go to the row), and an actor ended by an expected exception (finish_failed logs the one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return ("Results middleware" not in message and "with expected exception" not in message
                and "with unhandled exception" not in message)  # its traceback is in the attempt, its line ours


def build_broker(runtime: Runtime) -> PostgresBroker:
    logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_SaidElsewhere())
    broker = PostgresBroker(runtime, middleware=[
        AsyncIO(), TimeLimit(interval=200), Outcome(max_result_bytes=runtime.settings.bgtasks_max_result_bytes)])
    for task_type in actors.TASK_TYPES.values():
        # An actor module that fails to import stops the worker here: serving the other types would claim
        # that type's tasks too and fail them.
        _declare_actor(broker, runtime, task_type)
    return broker


def _declare_actor(broker: PostgresBroker, runtime: Runtime, task_type: actors.TaskType) -> None:
    handler = task_type.load()
    is_async = inspect.iscoroutinefunction(handler)

    def run(task_id: str, attempt: int) -> Any:
        ctx = runtime.begin(task_id, attempt)
        try:
            if is_async:
                loop_thread = get_event_loop_thread()
                assert loop_thread is not None, "the AsyncIO middleware starts the event loop thread"
                return loop_thread.run_coroutine(handler(ctx))
            return handler(ctx)
        finally:
            runtime.end(task_id)

    run.__name__ = task_type.name.replace("-", "_")
    declare = dramatiq.actor(actor_name=task_type.name, queue_name=QUEUE, broker=broker,
                             time_limit=int(task_type.time_limit_s * 1000), throws=EXPECTED)
    declare(run)


def run_worker(settings: Settings, concurrency: int, connections: Connections | None = None) -> int:
    """Run until SIGTERM/SIGINT: then stop claiming, let running tasks finish within the grace period, and
    hand the rest back to pending without counting an attempt."""
    # A wake-up crosses three threads (listener, consumer, worker); with CPython's default 5 ms GIL switch
    # interval a busy thread can hold each hand-off that long. 1 ms keeps pickup tails short.
    sys.setswitchinterval(0.001)
    runtime = Runtime(settings, concurrency, connections=connections)
    broker = build_broker(runtime)
    dramatiq.set_broker(broker)
    runtime.start()
    worker = dramatiq.Worker(broker, worker_threads=concurrency, worker_timeout=100)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    worker.start()
    log.info("worker %s running %s task types at concurrency %s (lease %.0fs)", runtime.worker_id,
             len(actors.TASK_TYPES), concurrency, runtime.lease_s)
    print(f"bgtasks worker {runtime.worker_id} ready (concurrency {concurrency})", flush=True)
    stop.wait()
    log.info("stopping: no new claims; waiting up to %.0fs for running tasks", settings.bgtasks_shutdown_grace_s)
    runtime.stopping.set()
    if not runtime.wait_idle(settings.bgtasks_shutdown_grace_s):
        with runtime.lock:
            left = [(r.task_id, r.attempt) for r in runtime.in_flight.values()]
        for task_id, attempt in left:
            runtime.interrupt(task_id, "worker shutting down")
            runtime.release(task_id, attempt)
        log.info("handed %s unfinished task(s) back to pending", len(left))
    worker.stop(timeout=2000)
    runtime.close()
    print(f"bgtasks worker {runtime.worker_id} stopped", flush=True)
    return 0
