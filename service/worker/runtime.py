"""One worker process's parts, put together: connections, the tasks held, the claim policy, and the threads
(doorbell, completer, heartbeat, scheduler, fence, retention) started and stopped in order."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bgtasks import actors

from ..connections import Connections
from ..connections import resolve as resolve_connections
from ..fencing import CallDeadlines
from ..logs import outage_logger, quiet_driver_pools
from ..retention import start_retention
from ..settings import Settings
from ..store import task_types as task_type_store
from ..store import worker as store
from .async_tasks import AsyncTasks
from .claim_policy import ClaimPolicy
from .completer import Completer
from .conn import open_pool
from .consumer import Claimer
from .doorbell import Doorbell
from .in_flight import InFlightTable
from .leases import Leases
from .outcomes import Outcomes
from .schedule_loop import schedule_loop
from .task_io import WorkerTaskIO

log = outage_logger("bgtasks.worker")  # warnings repeat through an outage: throttled


class Runtime:
    """Everything the broker and the actors share in one worker process (each part thread-safe)."""

    def __init__(self, settings: Settings, concurrency: int, worker_id: str | None = None,
                 connections: Connections | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        # DATABASE_URL for the pool, claims and completions (it may be a transaction pooler: then nothing
        # is prepared on them); the direct URL for LISTEN and retention's session lock.
        self.connections = connections or resolve_connections(settings)
        self.concurrency = concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        name = f"bgtasks worker {self.worker_id}"[:63]  # application_name of its connections
        quiet_driver_pools()
        pooled: dict[str, Any] = {"url": self.connections.url, "prepare": self.connections.prepare, "name": name}
        self.deadlines = CallDeadlines(clock)
        # The pool's size does not follow the concurrency: progress, failures and completions hold a
        # connection for one short statement each (BGTASKS_WORKER_POOL_SIZE).
        self.pool = open_pool(self.connections.url, min(concurrency + 1, settings.bgtasks_worker_pool_size),
                              prepare=self.connections.prepare, name=name)
        self.stopping = threading.Event()
        self.wake = threading.Event()  # the consumer's: something to claim, or room to claim into
        self.in_flight = InFlightTable(self.wake, concurrency)
        self.policy = ClaimPolicy(concurrency, settings.bgtasks_claim_ahead_ms / 1000)
        self.leases = Leases(settings, self.in_flight, self.worker_id, self.deadlines, clock, pooled)
        self.io = WorkerTaskIO(settings, self.pool, self.leases, self.deadlines, pooled)
        self.completer = Completer(self.pool, self.deadlines, self.wake, after_write=self._after_completions)
        self.claimer = Claimer(self.worker_id, self.policy, self.in_flight, self.completer, self.leases,
                               self.deadlines, self.io, pooled, self.stopping, self.wake)
        self.outcomes = Outcomes(settings, self.worker_id, self.in_flight, self.policy, self.completer,
                                 self.leases, self.pool, self.deadlines)
        self.async_tasks = AsyncTasks(self.in_flight, self.outcomes, settings.bgtasks_max_result_bytes)
        self.doorbell = Doorbell({**pooled, "url": self.connections.direct, "prepare": True}, settings.heartbeat_s,
                                 self.deadlines, self.policy, self.in_flight, self.wake, lambda: self.claimer.starved)
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    def _after_completions(self) -> None:
        if self.claimer.starved:
            self.wake.set()  # rows just left `processing`: room under a global limit, without the NOTIFY trip

    def start(self) -> None:
        with self.pool.connection() as conn:
            store.register_worker(conn, self.worker_id, socket.gethostname(), os.getpid(), self.concurrency)
            # The API validates and lists from what workers publish: it need not import the application.
            task_type_store.publish_task_types(conn, self.worker_id, actors.TASK_TYPES.values())
            self.policy.poll_interval_s = store.queue_settings(conn)["poll_interval"] / 1000
        for target, name, until in ((self.doorbell.run, "listener", self.stopping),
                                    (self.completer.run, "completer", self._closed),
                                    (self.io.progress_writer.run, "progress", self._closed),
                                    (self.leases.heartbeat_loop, "heartbeat", self.stopping),
                                    (lambda s: schedule_loop(self.pool, s), "scheduler", self.stopping),
                                    (self.leases.fence_loop, "fence", self.stopping)):
            t = threading.Thread(target=target, args=(until,), name=f"bgtasks-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        # Retention (service/retention.py): one worker at a time, its own connection while a pass runs.
        self._threads += start_retention(self.connections.direct, self.settings.bgtasks_retention_days,
                                         self.stopping)

    def stop_claiming(self) -> None:
        """Shutdown begins: no new claims; completions from now on go straight to the writer."""
        self.stopping.set()
        self.completer.stop_riding()
        self.wake.set()

    def close(self) -> None:
        self.stop_claiming()
        self._closed.set()
        for t in self._threads:
            t.join(timeout=2)
        self.async_tasks.close()
        self.completer.flush_all()
        try:
            with self.pool.connection(timeout=5) as conn:
                store.worker_stopped(conn, self.worker_id)
        except Exception as exc:
            log.warning("could not mark worker %s stopped (%s: %s)", self.worker_id, type(exc).__name__, exc)
        self.claimer.drop_connection()
        self.pool.close()

    def enqueue(self, task_type: str, payload: dict[str, Any], *, delay_ms: int | None, user_id: str) -> str:
        with self.pool.connection() as conn:
            return store.enqueue_task(conn, task_type, user_id, payload, (delay_ms or 0) / 1000)
