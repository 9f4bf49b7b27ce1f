"""Async task types on the event loop: Dramatiq dispatches the type's actor on a worker thread as for any
type, and the actor starts the coroutine on the AsyncIO middleware's loop and returns at once (ON_LOOP), so
the thread is free again while the task awaits: a thousand awaiting tasks cost a thousand coroutines, not a
thousand busy threads. The time limit is an asyncio timeout; an interrupt cancels the coroutine; when it
ends, its outcome goes the way an ack or a nack would (service/worker/outcomes.py), off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import TimeLimitExceeded

from ..middleware.cancellation import TaskInterrupted
from ..middleware.outcome import ON_LOOP, outcome_of
from ..task_context import TaskContext
from .in_flight import InFlightTable
from .outcomes import Outcomes

Handler = Callable[[TaskContext], Awaitable[Any]]
OUTCOME_THREADS = 4  # failures are written with retries: off the loop, on a few threads of their own


class AsyncTasks:
    def __init__(self, in_flight: InFlightTable, outcomes: Outcomes, max_result_bytes: int) -> None:
        self.in_flight = in_flight
        self.outcomes = outcomes
        self.max_result_bytes = max_result_bytes
        self.executor = ThreadPoolExecutor(OUTCOME_THREADS, thread_name_prefix="bgtasks-outcome")

    def start(self, task_id: str, attempt: int, task_type: str, handler: Handler, time_limit_s: float) -> Any:
        """On a Dramatiq worker thread: start the task on the loop; returns ON_LOOP (ack writes nothing)."""
        loop_thread = get_event_loop_thread()
        assert loop_thread is not None, "the AsyncIO middleware starts the event loop thread"
        ctx = self.in_flight.begin(task_id, attempt, on_thread=False)
        asyncio.run_coroutine_threadsafe(self._run(ctx, task_type, handler, time_limit_s), loop_thread.loop)
        return ON_LOOP

    async def _run(self, ctx: TaskContext, task_type: str, handler: Handler, time_limit_s: float) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None

        def cancel() -> None:  # any thread
            loop.call_soon_threadsafe(me.cancel)

        if not self.in_flight.on_loop(ctx.id, ctx.attempt, cancel):
            me.cancel()  # interrupted between begin() and now
        result: Any = None
        error: BaseException | None = None
        limit = asyncio.timeout(time_limit_s)
        try:
            async with limit:
                result = await handler(ctx)
        except TimeoutError as exc:
            error = TimeLimitExceeded() if limit.expired() else exc
        except asyncio.CancelledError:
            error = TaskInterrupted(ctx.cancel_reason or f"task {ctx.id} was interrupted")
        except Exception as exc:
            error = exc
        self.outcomes.ended(ctx.id)
        result, failure = outcome_of(result, error, max_result_bytes=self.max_result_bytes, task_type=task_type,
                                     time_limit_s=time_limit_s)
        if failure is None:
            self.outcomes.succeeded(ctx.id, ctx.attempt, result)  # a hand-off only: no I/O on the loop
        else:
            await loop.run_in_executor(self.executor, self.outcomes.failed, ctx.id, ctx.attempt, failure)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)
