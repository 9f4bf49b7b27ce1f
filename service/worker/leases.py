"""Leases: the heartbeat thread extends the leases this worker holds and reaps expired ones anywhere (the
reaper); the fence thread stops actors whose lease could not be renewed in time, before the database could
give their task to another worker, and cuts off database calls that hang (service/fencing.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from ..fencing import CallDeadlines, fence_margin
from ..settings import Settings
from ..store import worker as store
from .conn import connect
from .in_flight import InFlightTable

log = logging.getLogger("bgtasks.worker")


class Leases:
    def __init__(self, settings: Settings, in_flight: InFlightTable, worker_id: str, deadlines: CallDeadlines,
                 clock: Callable[[], float], connect_args: dict[str, Any]) -> None:
        self.settings = settings
        self.in_flight = in_flight
        self.worker_id = worker_id
        self.deadlines = deadlines
        self.clock = clock  # monotonic unless a test moves it
        self.connect_args = connect_args
        self.lease_s = settings.bgtasks_lease_s
        self.fence_margin_s = fence_margin(self.lease_s, settings.heartbeat_s)
        self._lock = threading.Lock()
        self.to_release: list[tuple[str, int]] = []  # fenced attempts whose actor stopped: hand back

    # ------------------------------------------------------------------ fencing
    def fence_overdue(self) -> list[str]:
        """Stop the actors of leases that end within the fence margin (no renewal got through in time),
        before the database could give their tasks to another worker; returns their task ids. Every thread
        calls it before it writes for a task, so a process woken from SIGSTOP stops first."""
        now = self.clock()
        with self.in_flight.lock:
            due = [r for r in self.in_flight.records.values()
                   if not r.fenced and now >= r.lease_until - self.fence_margin_s]
            for r in due:
                r.fenced = True
        for r in due:
            self.in_flight.interrupt(r.task_id, f"fenced: its lease ends within {self.fence_margin_s:g}s and no "
                                                "renewal reached the database; handed back once it answers")
        return [r.task_id for r in due]

    def release_later(self, task_id: str, attempt: int) -> None:
        """A fenced attempt's actor has stopped: the next heartbeat hands the task back."""
        with self._lock:
            self.to_release.append((task_id, attempt))

    def fence_loop(self, stopping: threading.Event) -> None:
        """Every 50 ms: fence overdue leases, and cut off database calls hanging past their deadline."""
        while not stopping.wait(0.05):
            self.fence_overdue()
            self.deadlines.enforce()

    # ------------------------------------------------------------------ heartbeats and the reaper
    def heartbeat_loop(self, stopping: threading.Event) -> None:
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
        while not stopping.wait(min(interval, self.settings.bgtasks_reap_interval_s)):
            try:
                if conn is None or conn.closed:
                    conn = connect(**self.connect_args)
                if time.monotonic() >= next_beat:
                    with self.deadlines.within(conn, patience, "a heartbeat"):
                        self.beat(conn)
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

    def beat(self, conn: psycopg.Connection[Any]) -> None:
        """Fence what is overdue, hand back what was fenced, renew the rest, stamp the worker row."""
        self.fence_overdue()
        self._release_fenced(conn)
        held = self.in_flight.ids(lambda r: not r.fenced)
        if held:
            sent = self.clock()
            kept = store.extend_leases(conn, self.worker_id, held, self.lease_s)
            with self.in_flight.lock:
                for tid in kept:
                    rec = self.in_flight.records.get(tid)
                    if rec is not None and not rec.fenced:
                        rec.lease_until = sent + self.lease_s
            for tid in set(held) - kept:
                if tid in self.in_flight:
                    self.in_flight.interrupt(tid, "lease lost: the task is no longer held by this worker")
        store.worker_heartbeat(conn, self.worker_id, self.settings.outage_s)

    def _release_fenced(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            todo, self.to_release = self.to_release, []
        try:
            while todo:
                task_id, attempt = todo[0]
                released = store.release_task(conn, task_id, attempt)
                todo.pop(0)
                log.info("fenced task %s attempt %s %s", task_id, attempt,
                         "handed back to pending" if released else "was taken back meanwhile: nothing to do")
        finally:
            if todo:
                with self._lock:
                    self.to_release[:0] = todo
