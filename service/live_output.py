"""A running task's live output, coalesced: pieces of text in (one per streamed token), at most one write per
interval out, so a model streaming 50 tokens a second costs the database about ten small writes a second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

__all__ = ["OutputCoalescer"]


class OutputCoalescer:
    """`add(text)` from the event loop; the text is written by `write` at most once per `interval_s` (the
    first piece at once), in order; `flush()` writes what is left and waits for it. `write` is best effort:
    whatever it raises is its own business, never the actor's (it should not raise)."""

    def __init__(
        self,
        write: Callable[[str], Awaitable[None]],
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.write = write
        self.interval_s = interval_s
        self.clock = clock
        self.sleep = sleep
        self.writes = 0
        self._pieces: list[str] = []
        self._last = -float("inf")
        self._task: asyncio.Task[None] | None = None

    def add(self, text: str) -> None:
        if not text:
            return
        self._pieces.append(text)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="task-output")

    async def _run(self) -> None:
        try:
            while self._pieces:
                wait = self._last + self.interval_s - self.clock()
                if wait > 0:
                    await self.sleep(wait)
                text = "".join(self._pieces)
                self._pieces.clear()
                self._last = self.clock()
                self.writes += 1
                await self.write(text)
        finally:
            self._task = None

    async def flush(self) -> None:
        """Write what is buffered now (without waiting out the interval) and return once it is written."""
        task = self._task
        if task is not None:
            self._last = -float("inf")  # the final write does not wait
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def aclose(self) -> None:
        """Drop what is buffered (the task was cancelled or fenced: nothing more is written for it)."""
        self._pieces.clear()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
