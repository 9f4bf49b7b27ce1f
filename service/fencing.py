"""Self-fencing: a worker knows from its own monotonic clock when each lease it holds runs out, and stops
what it can no longer renew before the database could give the task to another worker. A database call that
hangs on a frozen network path gets its socket shut down at a deadline, so the thread making it recovers.

The local deadline of a lease is the moment the claim or renewal that set it was *sent*, plus the lease: the
server stamps `now() + lease` later than that, so the worker's deadline never falls after the database's
(up to clock drift, which the margin covers)."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("bgtasks.worker")


def fence_margin(lease_s: float, heartbeat_s: float) -> float:
    """How long before a lease's end its actor is stopped: half of what the lease leaves beyond two
    heartbeats (lease 30 s, heartbeat 10 s: 5 s). A worker renews every heartbeat, so a healthy lease always
    has more left than this; one that misses about two renewals in a row is fenced."""
    return (lease_s - 2 * heartbeat_s) / 2


class CallDeadlines:
    """Database calls with a deadline. A call still waiting when its deadline passes has its connection's
    socket shut down (the fd stays open until its owner closes it, so it is never another socket's by then):
    the blocked driver call fails at once instead of waiting for TCP to give up, minutes later."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[int, float, str]] = {}
        self._ids = itertools.count()

    @contextmanager
    def within(self, conn: Any, seconds: float, what: str) -> Iterator[None]:
        key = next(self._ids)
        try:
            fd = conn.fileno()
        except Exception:  # closed or broken already: the call fails by itself
            yield
            return
        with self._lock:
            self._calls[key] = (fd, self.clock() + seconds, what)
        try:
            yield
        finally:
            with self._lock:  # before the owner can close the fd: enforce() never shuts a reused one
                self._calls.pop(key, None)

    def enforce(self) -> list[str]:
        """Shut down the sockets of overdue calls; returns what they were doing."""
        now = self.clock()
        cut: list[str] = []
        with self._lock:
            for key, (fd, deadline, what) in list(self._calls.items()):
                if now >= deadline:
                    del self._calls[key]
                    _shut_down(fd)
                    cut.append(what)
        for what in cut:
            log.warning("%s got no answer in time: its connection was closed (database unreachable?)", what)
        return cut


def _shut_down(fd: int) -> None:
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.close()  # the duplicate only; the driver's fd fails on its next read or write
