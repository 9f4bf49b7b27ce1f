"""The one backoff every retry loop uses (hub LISTEN, the worker's doorbell and writes, the clients' stream resume,
`bgtasks watch`): delays that double from `base` up to `cap`, optionally jittered, counted in failures in a row.

It only says how long to wait; the caller sleeps (time.sleep or asyncio.sleep), so the policy is tested with
no clock at all. The dashboard's copy is service/static/backoff.js.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_DOUBLINGS = 30  # past this every delay is the cap anyway; keeps 2**n small


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """The wait after `failures` failures in a row, not counting this one: base, 2*base, 4*base, ... at most cap."""
    return min(cap, base * 2 ** min(max(failures, 0), MAX_DOUBLINGS))


@dataclass
class Backoff:
    """Failures in a row and the wait each asks for. `jitter` is the fraction a delay may randomly lose (0.5:
    between half and all of it), so many clients that lost one server do not all come back at once."""

    base: float
    cap: float
    jitter: float = 0.0
    failures: int = 0
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def next(self) -> float:
        """One more failure: how long to wait before the next try."""
        delay = backoff_delay(self.failures, self.base, self.cap)
        self.failures += 1
        if self.jitter:
            delay *= self.uniform(1.0 - self.jitter, 1.0)
        return delay

    def reset(self) -> None:
        """It worked: the next failure waits `base` again."""
        self.failures = 0
