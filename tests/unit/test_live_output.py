"""OutputCoalescer: many pieces, few writes, nothing lost or reordered (a fake clock; no waiting)."""

from __future__ import annotations

import asyncio

from bgtasks.live_output import OutputCoalescer


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Until the test has moved the clock on by `seconds` (or at once when nobody moves it)."""
        self.slept.append(seconds)
        target = self.now + seconds
        for _ in range(1000):
            if self.now >= target:
                return
            await asyncio.sleep(0)


async def test_pieces_arriving_faster_than_the_interval_are_written_together_in_order() -> None:
    t = FakeTime()
    written: list[str] = []

    async def write(text: str) -> None:
        written.append(text)

    out = OutputCoalescer(write, 0.1, clock=t.clock, sleep=t.sleep)
    for i in range(200):  # 200 pieces over 4 s of the fake clock
        out.add(f"w{i} ")
        t.now += 0.02
        await asyncio.sleep(0)
    await out.flush()
    assert "".join(written) == "".join(f"w{i} " for i in range(200))
    assert 30 <= len(written) <= 45, len(written)  # about ten a second, not one per piece
    assert all(s <= 0.1 for s in t.slept)


async def test_flush_writes_the_rest_and_aclose_drops_it() -> None:
    t = FakeTime()
    written: list[str] = []

    async def write(text: str) -> None:
        written.append(text)

    out = OutputCoalescer(write, 0.1, clock=t.clock, sleep=t.sleep)
    out.add("a")
    out.add("")
    await out.flush()
    assert written == ["a"]
    out.add("b")
    await out.aclose()
    await out.flush()
    assert written == ["a"]
