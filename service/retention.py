"""Retention: delete finished tasks older than BGTASKS_RETENTION_DAYS in small batches, in one process at a
time (a session advisory lock), from a thread of every worker; `bgtasks cleanup` runs one pass by hand.

Small batches keep each DELETE a short transaction that skips rows others hold (SKIP LOCKED), so claims never
wait behind it, and its per-statement trigger sends a few chunked NOTIFYs per batch rather than one per row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .logs import outage_logger
from .store import operations as store

log = outage_logger("bgtasks.retention")  # warnings repeat through an outage: throttled

BATCH_SIZE = 1000
INTERVAL_S = 60.0  # between passes
FIRST_PASS_S = 2.0  # after a worker starts
PAUSE_S = 0.05  # between batches: lets claims and commits through, bounds the NOTIFY rate
DAY_S = 86400.0


def run_retention(conn: psycopg.Connection[Any], older_than_s: float, batch_size: int = BATCH_SIZE, *,
                  pause_s: float = PAUSE_S, stop: threading.Event | None = None,
                  on_batch: Callable[[int], None] | None = None) -> int:
    """Delete batches of finished tasks older than `older_than_s` until a batch comes back short (or `stop`
    is set); returns how many were deleted. `conn` must be in autocommit mode: one transaction per batch."""
    total = 0
    while True:
        n = store.purge_finished_tasks(conn, older_than_s, batch_size)
        total += n
        if on_batch is not None:
            on_batch(n)
        if n < batch_size or (stop is not None and stop.is_set()):
            return total
        if stop is not None and stop.wait(pause_s):
            return total
        if stop is None and pause_s > 0:
            time.sleep(pause_s)


def retention_pass(url: str, older_than_s: float, batch_size: int = BATCH_SIZE, *, pause_s: float = PAUSE_S,
                   stop: threading.Event | None = None) -> int | None:
    """One pass on a dedicated connection, if no other process is running one: None when another holds the
    lock. The lock is a session lock, so it dies with the connection if this process does."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=5,
                         application_name="bgtasks retention") as conn:
        if not store.try_retention_lock(conn):
            return None
        try:
            return run_retention(conn, older_than_s, batch_size, pause_s=pause_s, stop=stop)
        finally:
            if not conn.closed:
                store.release_retention_lock(conn)


class RetentionThread(threading.Thread):
    """A worker's periodic retention: a pass shortly after start, then every `interval_s`."""

    def __init__(self, url: str, retention_days: float, stop: threading.Event, *,
                 interval_s: float = INTERVAL_S, first_s: float = FIRST_PASS_S,
                 batch_size: int = BATCH_SIZE) -> None:
        super().__init__(name="bgtasks-retention", daemon=True)
        self.url = url
        self.older_than_s = retention_days * DAY_S
        self.stop = stop
        self.interval_s = interval_s
        self.first_s = first_s
        self.batch_size = batch_size

    def run(self) -> None:
        wait = self.first_s
        while not self.stop.wait(wait):
            wait = self.interval_s
            try:
                n = retention_pass(self.url, self.older_than_s, self.batch_size, stop=self.stop)
            except psycopg.Error as exc:  # a database outage: try again next interval
                log.warning("retention pass failed: %s", exc)
                continue
            if n:
                log.info("retention: deleted %s finished task(s) older than %g day(s)", n,
                         self.older_than_s / DAY_S)
            else:  # debug only: once a minute per worker, and what a test waits for
                log.debug("retention: pass done, %s",
                          "another process held the lock" if n is None else "nothing to delete")


def start_retention(url: str, retention_days: float, stop: threading.Event) -> list[threading.Thread]:
    """Start the retention thread unless retention is off (0 days: keep finished tasks forever)."""
    if retention_days <= 0:
        return []
    thread = RetentionThread(url, retention_days, stop)
    thread.start()
    return [thread]
