"""An asyncio event loop on virtual time, for tests of code that waits on the loop's own timers
(`loop.call_at`, `asyncio.sleep`, `asyncio.wait_for`): when nothing is ready to run, the clock jumps to the
next timer instead of the test waiting for it, so waits are exact and take no wall-clock time.

    @on_virtual_clock
    async def test_keep_alive_fires_after_its_interval() -> None: ...   # a plain (sync) test for pytest
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks: polls the real descriptors, and when none is ready moves `now` by the loop's timeout
    (the time to its next timer) instead of sleeping it."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or (timeout is not None and timeout <= 0):
            return events
        if timeout is None:
            raise RuntimeError("virtual clock: nothing is ready and no timer is set, so the test would hang")
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` is virtual: it starts at 0 and moves only to the next timer."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now


def on_virtual_clock(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test to completion on a fresh `VirtualClockLoop` (a sync test, so pytest-asyncio's loop
    is not involved)."""

    def run() -> None:
        loop = VirtualClockLoop()
        try:
            loop.run_until_complete(test())
        finally:
            loop.close()

    run.__name__, run.__qualname__, run.__doc__ = test.__name__, test.__qualname__, test.__doc__
    run.__module__ = test.__module__
    return run
