"""The doorbell (the listener thread): one dedicated connection, to the direct URL, LISTENs. New pending
work wakes the consumer, a cancel interrupts the running actor, a settings change is seen at once; after a
reconnect it re-checks everything the worker holds (notifications may have been missed)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from ..backoff import Backoff
from ..fencing import CallDeadlines
from ..store import worker as store
from .claim_policy import ClaimPolicy
from .conn import connect
from .in_flight import InFlightTable

log = logging.getLogger("bgtasks.worker")

CHANNEL_TASKS = "bgtasks_tasks"
CHANNEL_QUEUE = "bgtasks_queue"
FINISHED = frozenset({"completed", "error", "cancelled", "deleted"})


class Doorbell:
    def __init__(self, connect_args: dict[str, Any], probe_s: float, deadlines: CallDeadlines,
                 policy: ClaimPolicy, in_flight: InFlightTable, wake: threading.Event,
                 starved: Callable[[], bool]) -> None:
        self.connect_args = connect_args
        self.probe_s = probe_s  # a silent network never ends a LISTEN: ask this often
        self.deadlines = deadlines
        self.policy = policy
        self.in_flight = in_flight
        self.wake = wake
        self.starved = starved  # the consumer's last claim came back short: room anywhere may help it

    def run(self, stopping: threading.Event) -> None:
        backoff = Backoff(base=0.1, cap=5.0)
        while not stopping.is_set():
            try:
                with connect(**self.connect_args) as conn:
                    conn.execute(f"LISTEN {CHANNEL_TASKS}")
                    conn.execute(f"LISTEN {CHANNEL_QUEUE}")
                    backoff.reset()
                    self.resync(conn)
                    probed = time.monotonic()
                    while not stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self.on_notify(note.channel, note.payload)
                        if time.monotonic() - probed >= self.probe_s:
                            # No answer in time: cut it off (and reconnect).
                            with self.deadlines.within(conn, max(self.probe_s, 1.0), "LISTEN"):
                                conn.execute("SELECT 1")
                            probed = time.monotonic()
            except psycopg.Error as exc:
                if stopping.is_set():
                    return
                delay = backoff.next()
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc.__class__.__name__, delay)
                time.sleep(delay)

    def resync(self, conn: psycopg.Connection[Any]) -> None:
        """After (re)connecting: re-read the poll interval, claim again, and re-check our tasks."""
        self.policy.poll_interval_s = store.queue_settings(conn)["poll_interval"] / 1000
        self.wake.set()
        held = self.in_flight.ids()
        if held:
            present = store.task_statuses(conn, held)
            for tid in held:
                status = present.get(tid)
                if status != "processing":
                    self.in_flight.interrupt(tid, f"task is {status or 'deleted'}")

    def on_notify(self, channel: str, payload: str) -> None:
        if channel == CHANNEL_QUEUE:
            try:
                self.policy.poll_interval_s = json.loads(payload)["poll_interval"] / 1000
            except (ValueError, KeyError, TypeError):
                pass
            self.policy.poll_now()
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
                if self.starved():
                    self.wake.set()  # room may have freed under a limit
                if e.get("id") in self.in_flight:  # our own outcomes leave in_flight before they are written
                    self.in_flight.interrupt(e["id"], f"task was {status}")
