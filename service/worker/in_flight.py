"""The tasks a worker process holds, from claim until their outcome is handed on: which attempt, which
slot runs it, when its lease surely ends. Thread-safe; every other part of the worker reads it here."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import TaskCancelled
from ..middleware.cancellation import interrupt_thread
from ..task_context import TaskContext

log = logging.getLogger("bgtasks.worker")


@dataclass
class InFlight:
    """A claimed task, from claim until its outcome is handed to the database."""

    task_id: str
    attempt: int
    context: TaskContext | None = None
    thread_id: int | None = None  # the thread running it (sync types); None: waiting, or on the event loop
    interruptible: bool = False
    claimed_at: float = 0.0  # time.monotonic()
    started_at: float | None = None
    lease_until: float = float("inf")  # the lease clock's time by which this worker's lease surely ends
    fenced: bool = False  # its lease could not be renewed in time: stopped, never written for again
    cancel: Callable[[], None] | None = None  # an async task's: cancels it on the event loop
    running: bool = False  # it holds one of the slots (from begin until end)


class InFlightTable:
    """`slots` tasks run at once at most (the concurrency): a thread runs a sync task and an async one awaits
    on the event loop without a thread, so the slots, not the threads, bound what runs."""

    def __init__(self, wake: threading.Event, slots: int) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, InFlight] = {}
        self.idle = threading.Condition(self.lock)
        self.slot_free = threading.Condition(self.lock)
        self.slots = slots
        self.running = 0
        self.wake = wake  # the consumer's: set when a slot frees

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.records

    def __len__(self) -> int:
        return len(self.records)

    def add(self, records: Iterable[InFlight]) -> None:
        with self.lock:
            for r in records:
                self.records[r.task_id] = r

    def snapshot(self) -> dict[str, InFlight]:
        with self.lock:
            return dict(self.records)

    def begin(self, task_id: str, attempt: int, *, on_thread: bool = True) -> TaskContext:
        """A slot starts the task (this thread runs it, or `on_thread=False`: the event loop will): its
        context, or TaskCancelled when it is no longer held (handed back, cancelled while it waited)."""
        with self.lock:
            while True:  # a task claimed ahead waits here for a slot (or is handed back meanwhile)
                rec = self.records.get(task_id)
                if rec is None or rec.attempt != attempt:
                    raise TaskCancelled(f"task {task_id} was handed back before it started")
                assert rec.context is not None
                ctx = rec.context
                if ctx.cancelled.is_set():  # cancelled while it waited for a slot
                    raise TaskCancelled(ctx.cancel_reason or f"task {task_id} was cancelled")
                if self.running < self.slots:
                    break
                self.slot_free.wait(timeout=1.0)
            self.running += 1
            rec.running = True
            if on_thread:
                rec.thread_id = threading.get_ident()
                rec.interruptible = True
            rec.started_at = time.monotonic()
        return ctx

    def end(self, task_id: str) -> float | None:
        """The actor returned or raised: how long it ran (None if it never started here)."""
        with self.lock:
            rec = self.records.get(task_id)
            if rec is None:
                return None
            rec.interruptible = False
            rec.cancel = None
            self._free_slot(rec)
            return None if rec.started_at is None else time.monotonic() - rec.started_at

    def interrupt(self, task_id: str, reason: str) -> None:
        """Stop the actor running task_id, if any: flag it (cooperative) and interrupt its thread, or cancel
        it on the event loop."""
        with self.lock:
            rec = self.records.get(task_id)
            if rec is None or rec.context is None:
                return
            rec.context.cancel_reason = reason
            rec.context.cancelled.set()
            self.slot_free.notify_all()  # a begin() waiting for a slot gives up
            if rec.interruptible and rec.thread_id is not None:
                interrupt_thread(rec.thread_id)
            cancel = rec.cancel
        if cancel is not None:
            cancel()
        log.info("task %s interrupted: %s", task_id, reason)

    def forget(self, task_id: str, attempt: int) -> InFlight | None:
        """Drop what is held for this attempt of the task. A message of an earlier attempt (claimed ahead,
        handed back, claimed again by this worker) must not drop the record of the later one."""
        with self.lock:
            rec = self.records.get(task_id)
            if rec is not None and rec.attempt == attempt:
                del self.records[task_id]
                self._free_slot(rec)
            else:
                rec = None
            if not self.records:
                self.idle.notify_all()
        self.wake.set()  # a slot is free: claim
        return rec

    def on_loop(self, task_id: str, attempt: int, cancel: Callable[[], None]) -> bool:
        """An async task started on the event loop; `cancel` stops it there. False: it was cancelled
        meanwhile (the caller cancels it)."""
        with self.lock:
            rec = self.records.get(task_id)
            if rec is None or rec.attempt != attempt or rec.context is None or rec.context.cancelled.is_set():
                return False
            rec.cancel = cancel
            return True

    def take(self, task_ids: Iterable[str]) -> list[InFlight]:
        """Remove these records (tasks handed back before they started)."""
        with self.lock:
            taken = [r for r in (self.records.pop(t, None) for t in task_ids) if r is not None]
            self.slot_free.notify_all()  # their begin() (waiting for a slot) finds them gone
            if not self.records:
                self.idle.notify_all()
        return taken

    def _free_slot(self, rec: InFlight) -> None:
        """Caller holds the lock."""
        if rec.running:
            rec.running = False
            self.running -= 1
            self.slot_free.notify()

    def wait_idle(self, timeout_s: float | None) -> bool:
        with self.lock:
            return self.idle.wait_for(lambda: not self.records, timeout=timeout_s)

    def ids(self, where: Callable[[InFlight], bool] = lambda r: True) -> list[str]:
        with self.lock:
            return [tid for tid, r in self.records.items() if where(r)]

    def attempts(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(r.task_id, r.attempt) for r in self.records.values()]

    def update(self, task_id: str, change: Callable[[InFlight], Any]) -> None:
        with self.lock:
            rec = self.records.get(task_id)
            if rec is not None:
                change(rec)
