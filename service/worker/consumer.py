"""The claims (Dramatiq's consumer thread): when woken or when the poll interval ran out, claim as many
tasks as the claim policy says, on one dedicated connection, with the completions waiting carried along;
hand back tasks claimed ahead that waited too long, and what a claim whose answer was lost may have taken."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from ..fencing import CallDeadlines
from ..store import worker as store
from ..task_context import TaskContext, TaskIO
from .claim_policy import ClaimPolicy
from .completer import Completer
from .conn import connect
from .in_flight import InFlight, InFlightTable
from .leases import Leases

log = logging.getLogger("bgtasks.worker")


class Claimer:
    def __init__(self, worker_id: str, policy: ClaimPolicy, in_flight: InFlightTable, completer: Completer,
                 leases: Leases, deadlines: CallDeadlines, io: TaskIO, connect_args: dict[str, Any],
                 stopping: threading.Event, wake: threading.Event) -> None:
        self.worker_id = worker_id
        self.policy = policy
        self.in_flight = in_flight
        self.completer = completer
        self.leases = leases
        self.deadlines = deadlines
        self.io = io  # what the contexts of the tasks it claims are given
        self.connect_args = connect_args
        self.stopping = stopping
        self.wake = wake
        self.wake.set()  # claim once at start
        # Until a claim proves otherwise, a task finishing anywhere should wake us (room under a limit).
        self.starved = False
        self._conn: psycopg.Connection[Any] | None = None
        # The latest claim time the database told this worker of; after a claim whose answer was lost (the
        # connection died, perhaps after the commit) what it took later goes back to pending first.
        self.claimed_up_to = datetime.min.replace(tzinfo=UTC)
        self.claim_answer_lost = False

    def claim_if_due(self) -> list[dict[str, Any]]:
        """Claim for the free slots when woken (NOTIFY, a finished task) or when the poll interval ran out."""
        rows = self._claim() if not self.stopping.is_set() else None
        if rows is None:
            # No round trip now: what waits goes to the writer thread. (After a round trip, what finished
            # meanwhile woke us: it rides with the next claim, or goes to the writer when there is none.)
            self.completer.pass_on()
        return rows or []

    def _claim(self) -> list[dict[str, Any]] | None:
        """The claim round trip, if one is due; None when none was made."""
        self.leases.fence_overdue()  # a process woken from SIGSTOP stops what it no longer holds, first
        now = time.monotonic()
        if self.policy.claim_ahead_s:
            self._hand_back_stale(now)
        polling = self.policy.poll_due(now)
        if not (self.wake.is_set() or polling):
            return None
        self.wake.clear()
        with self.in_flight.lock:
            free = self.policy.claim_size(now, self.in_flight.records.values())
        if free <= 0:
            return None
        # Set before the claim: a finish committed while it runs must not be missed.
        self.starved = True
        finished = self.completer.take()
        try:
            conn = self.connection()
            if self.claim_answer_lost:
                lost = store.release_lost_claims(conn, self.worker_id, self.claimed_up_to)
                self.claim_answer_lost = False
                if lost:
                    log.info("handed back %s task(s) claimed while the connection died (never started here)",
                             len(lost))
            sent = self.leases.clock()
            # A claim that takes longer than this would be fenced the moment it returned; cutting it off frees
            # the consumer thread from a frozen network path (its tasks, if it committed, are reaped).
            lease_s = self.leases.lease_s
            with self.deadlines.within(conn, lease_s - self.leases.fence_margin_s, "a claim"):
                rows, due_in = store.complete_and_claim(conn, finished, self.worker_id, free, lease_s)
            if polling:
                store.mark_polled(conn, int(self.policy.poll_interval_s * 1000))
                self.policy.polled(now)
            if len(rows) < free:
                self.policy.came_back_short(now, due_in)
        except psycopg.Error as exc:
            self.completer.write(finished)  # the writer retries them until the database answers
            self.claim_answer_lost = True  # it may have committed: hand back what it took, next time
            log.warning("claim failed (%s); retrying shortly", exc.__class__.__name__)
            self.drop_connection()
            self.policy.claim_failed(now)
            return []
        if len(rows) == free:
            self.wake.set()  # there may be more: claim again as soon as slots free up
        # Fewer than asked: the queue is empty, or a limit (global, per user, per type) held us back. Then
        # a task finishing anywhere may make room, so the listener wakes us on finished tasks too.
        self.starved = len(rows) < free
        claimed_at = time.monotonic()
        if rows:
            self.claimed_up_to = max(self.claimed_up_to, max(r["started_at"] for r in rows))
        self.in_flight.add(InFlight(r["id"], r["attempt"], self._context(r), claimed_at=claimed_at,
                                    lease_until=sent + lease_s) for r in rows)
        return rows

    def _hand_back_stale(self, now: float) -> None:
        """Tasks claimed ahead that no slot started in time go back to pending, for any worker to take. Their
        messages stay in Dramatiq's queue; begin() then finds them gone."""
        with self.in_flight.lock:
            stale = self.policy.stale(now, self.in_flight.records)
        taken = self.in_flight.take(stale)
        if not taken:
            return
        self.policy.handed_back()
        try:
            conn = self.connection()
            for r in taken:
                store.release_task(conn, r.task_id, r.attempt)
        except psycopg.Error as exc:  # their leases run out and the reaper takes them back
            log.warning("could not hand back tasks claimed ahead (%s)", exc.__class__.__name__)
            self.drop_connection()
        log.info("handed back %s task(s) claimed ahead that no thread started", len(taken))

    def wait_for_work(self, timeout_s: float) -> None:
        """Sleep until woken, the next poll, or the timeout. (Tasks claimed ahead and still waiting are
        checked within the consumer's timeout, 100 ms: `_hand_back_stale`.)"""
        if not self.stopping.is_set():
            now = time.monotonic()
            with self.in_flight.lock:
                free = self.policy.free(now, self.in_flight.records.values())
            timeout_s = self.policy.wait_s(now, timeout_s, free)
        self.wake.wait(timeout_s)

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(**self.connect_args)
        return self._conn

    def drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _context(self, row: dict[str, Any]) -> TaskContext:
        return TaskContext(
            id=row["id"], task_type=row["task_type"], attempt=row["attempt"], user_id=row["user_id"],
            payload=row["payload"] or {}, project_id=row["project_id"], project_name=row["project_name"],
            project_path=row["project_path"], retry_count=row["retry_count"], max_retries=row["max_retries"],
            io=self.io,
        )


