"""Completions, handed on explicitly: an actor that finished leaves its result here; the consumer takes
what is waiting into its next claim round trip (complete_and_claim: one statement, one commit for both), and
what it will not carry (no claim to make, a failed round trip, shutdown) it hands to the writer thread,
which writes it in batches with retries. Nothing is ever offered to both."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from psycopg_pool import ConnectionPool

from ..fencing import CallDeadlines
from ..store import worker as store
from .conn import write_with_retry

log = logging.getLogger("bgtasks.worker")

Completion = tuple[str, int, Any]  # task id, attempt, result
BATCH = 500


class Completer:
    def __init__(self, pool: ConnectionPool[Any], deadlines: CallDeadlines, wake: threading.Event,
                 after_write: Callable[[], None]) -> None:
        self.pool = pool
        self.deadlines = deadlines
        self.wake = wake  # the consumer's
        self.after_write = after_write
        self._lock = threading.Lock()
        self._waiting: list[Completion] = []  # for the consumer's next round trip
        self._to_write: queue.Queue[list[Completion]] = queue.Queue()  # handed to the writer thread
        self._direct = False

    # ------------------------------------------------------------------ the hand-off
    def add(self, item: Completion) -> None:
        """An actor finished (any thread): the consumer is woken to carry it, unless it no longer claims."""
        with self._lock:
            ride = not self._direct
            if ride:
                self._waiting.append(item)
        if ride:
            self.wake.set()
        else:
            self._to_write.put([item])

    def take(self, at_most: int = BATCH) -> list[Completion]:
        """The consumer takes what waits into its round trip; it writes them, or hands them on (`write`)."""
        with self._lock:
            taken, self._waiting = self._waiting[:at_most], self._waiting[at_most:]
        return taken

    def write(self, items: list[Completion]) -> None:
        """Hand completions to the writer thread."""
        if items:
            self._to_write.put(items)

    def pass_on(self) -> None:
        """The consumer makes no round trip now: what waits goes to the writer thread."""
        while items := self.take():
            self.write(items)

    def stop_riding(self) -> None:
        """Shutdown: the consumer claims no more, so every completion goes to the writer from now on."""
        with self._lock:
            self._direct = True
        self.pass_on()

    # ------------------------------------------------------------------ the writer thread
    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self.flush(timeout_s=0.2)

    def flush(self, timeout_s: float) -> None:
        """Write what was handed over (waiting up to `timeout_s` for the first batch), in batches of BATCH."""
        try:
            batch = self._to_write.get(timeout=timeout_s)
        except queue.Empty:
            return
        while len(batch) < BATCH:
            try:
                batch += self._to_write.get_nowait()
            except queue.Empty:
                break
        done = write_with_retry(self.pool, self.deadlines, lambda conn: store.complete_tasks(conn, batch),
                                attempts=600)
        self.after_write()
        if done is not None and len(done) < len(batch):
            lost = [tid for tid, _, _ in batch if tid not in done]
            log.info("not completed (cancelled or taken back meanwhile): %s", ", ".join(lost[:20]))

    def flush_all(self) -> None:
        """Close: everything still here, written now."""
        self.stop_riding()
        while not self._to_write.empty():
            self.flush(timeout_s=0.05)

    def empty(self) -> bool:
        with self._lock:
            return not self._waiting and self._to_write.empty()
