"""Cancellation: when a running task is cancelled (API, psql, a failed dependency) or its lease is lost,
interrupt the thread that runs it. For an async actor Dramatiq's event-loop bridge turns the interrupt into
asyncio cancellation, which abandons an in-flight model call."""

from __future__ import annotations

from dramatiq.threading import Interrupt, raise_thread_exception


class TaskInterrupted(Interrupt):
    """Raised inside an actor's thread: its task is no longer ours to run."""


def interrupt_thread(thread_id: int) -> None:
    raise_thread_exception(thread_id, TaskInterrupted)
