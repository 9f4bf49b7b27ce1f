"""Start-up and shutdown of `bgtasks worker`: the broker, one Dramatiq actor per task type, the Dramatiq
worker threads, and the signals that stop them (running tasks get a grace period, the rest go back)."""

from __future__ import annotations

import inspect
import logging
import signal
import sys
import threading
from typing import Any

import dramatiq
from dramatiq.middleware import AsyncIO, TimeLimit

from bgtasks import actors

from ..broker import QUEUE, PostgresBroker
from ..connections import Connections
from ..logs import outage_logger
from ..middleware.outcome import EXPECTED, Outcome
from ..settings import Settings
from .runtime import Runtime

log = outage_logger("bgtasks.worker")


class _SaidElsewhere(logging.Filter):
    """Dramatiq lines that say nothing we do not: return values "discarded" without its Results middleware
    (ours go to the row), and an actor ended by an expected exception (finish_failed logs the one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return ("Results middleware" not in message and "with expected exception" not in message
                and "with unhandled exception" not in message)  # its traceback is in the attempt, its line ours


def build_broker(runtime: Runtime) -> PostgresBroker:
    logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_SaidElsewhere())
    broker = PostgresBroker(runtime.claimer, runtime.outcomes, runtime.in_flight, runtime.enqueue, middleware=[
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
        if is_async:  # started on the event loop: this thread is free again at once
            return runtime.async_tasks.start(task_id, attempt, task_type.name, handler, task_type.time_limit_s)
        ctx = runtime.in_flight.begin(task_id, attempt)
        try:
            return handler(ctx)
        finally:
            runtime.outcomes.ended(task_id)

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
    # One thread per slot, for sync types (an async type's task holds its thread only while it starts). An
    # idle thread wakes once per worker_timeout: at 1 s, a thousand idle threads cost next to nothing; the
    # consumer has its own timeout (service/broker.py), so claims and shutdown do not wait on this one.
    threads = min(settings.bgtasks_worker_threads or concurrency, concurrency)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=1000)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    worker.start()
    log.info("worker %s running %s task types at concurrency %s, %s threads (lease %.0fs)", runtime.worker_id,
             len(actors.TASK_TYPES), concurrency, threads, runtime.leases.lease_s)
    print(f"bgtasks worker {runtime.worker_id} ready (concurrency {concurrency})", flush=True)
    stop.wait()
    log.info("stopping: no new claims; waiting up to %.0fs for running tasks", settings.bgtasks_shutdown_grace_s)
    runtime.stop_claiming()
    if not runtime.in_flight.wait_idle(settings.bgtasks_shutdown_grace_s):
        left = runtime.in_flight.attempts()
        for task_id, attempt in left:
            runtime.in_flight.interrupt(task_id, "worker shutting down")
            runtime.outcomes.release(task_id, attempt)
        log.info("handed %s unfinished task(s) back to pending", len(left))
    worker.stop(timeout=3000)
    runtime.close()
    print(f"bgtasks worker {runtime.worker_id} stopped", flush=True)
    return 0
