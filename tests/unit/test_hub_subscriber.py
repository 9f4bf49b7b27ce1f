"""A hub subscriber's waiting, without a database: a change wakes the reader at once, and the keep-alive
wait (one timer per subscriber, re-armed only when it fires) still ends on time after earlier wakes."""

from __future__ import annotations

import asyncio
from typing import Any

from bgtasks.hub import Event, Hub, Subscriber, TaskFilter


def subscriber() -> Subscriber:
    hub = Hub("postgresql://unused", pool=None)  # type: ignore[arg-type]  # never connects here
    return hub.subscribe(TaskFilter())


def event(seq: int, task_id: str = "task_1") -> Event:
    return Event("task", seq, task_id)


async def timed(waiter: Any) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(waiter, 5)
    return loop.time() - started


async def test_an_offer_wakes_the_waiting_reader_at_once() -> None:
    sub = subscriber()
    waiter = sub.ready(10)
    sub.offer(event(1))
    assert await timed(waiter) < 1
    assert [e.seq for e in sub.take()] == [1]
    assert sub.take() == []


async def test_a_wait_with_nothing_ends_after_its_own_interval_after_an_earlier_wake() -> None:
    sub = subscriber()
    first = sub.ready(0.3)  # arms the timer for 0.3 s from now
    await asyncio.sleep(0.1)
    sub.offer(event(1))
    await first
    sub.take()
    # The timer armed by the first wait fires 0.2 s into this one; it must not end it early.
    elapsed = await timed(sub.ready(0.3))
    assert 0.28 <= elapsed < 1, elapsed
    assert sub.take() == []


async def test_a_shorter_wait_than_the_armed_timer_ends_on_time() -> None:
    sub = subscriber()
    first = sub.ready(10)
    sub.offer(event(1))
    await first
    sub.take()
    assert await timed(sub.ready(0.05)) < 1


async def test_a_wait_without_interval_is_not_ended_by_an_earlier_timer() -> None:
    sub = subscriber()
    first = sub.ready(0.05)
    sub.offer(event(1))
    await first
    sub.take()
    endless = sub.ready(None)
    await asyncio.sleep(0.2)  # past the first wait's deadline
    assert not endless.done()
    sub.offer(event(2))
    await asyncio.wait_for(endless, 5)
    assert [e.seq for e in sub.take()] == [2]


async def test_closing_ends_the_wait_and_leaves_the_hub() -> None:
    sub = subscriber()
    waiter = sub.ready(10)
    sub.close("bye")
    assert await timed(waiter) < 1
    assert sub.closed_reason == "bye" and sub.take() == []
    assert sub.hub.subscriber_count == 0 and sub.hub._streams == {}
