"""A hub subscriber's waiting, without a database: a change wakes the reader at once, and the keep-alive
wait (one timer per subscriber, re-armed only when it fires) still ends on time after earlier wakes. The
waits run on a virtual clock (tests/virtual_clock.py), so their durations are exact, not measured."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bgtasks.api.events import event_size
from bgtasks.hub import Event, Holder, Hub, Subscriber, TaskFilter, TooManyStreams
from tests.virtual_clock import on_virtual_clock


def subscriber() -> Subscriber:
    hub = Hub("postgresql://unused", pool=None)  # type: ignore[arg-type]  # never connects here
    return hub.subscribe(TaskFilter())


def event(seq: int, task_id: str = "task_1") -> Event:
    return Event("task", seq, task_id)


async def timed(waiter: Any) -> float:
    """How long the waiter took to resolve, in the loop's (virtual) seconds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(waiter, 5)
    return loop.time() - started


@on_virtual_clock
async def test_an_offer_wakes_the_waiting_reader_at_once() -> None:
    sub = subscriber()
    waiter = sub.ready(10)
    sub.offer(event(1))
    assert await timed(waiter) == 0
    assert [e.seq for e in sub.take()] == [1]
    assert sub.take() == []


@on_virtual_clock
async def test_a_wait_with_nothing_ends_after_its_own_interval_after_an_earlier_wake() -> None:
    sub = subscriber()
    first = sub.ready(0.3)  # arms the timer for 0.3 s from now
    await asyncio.sleep(0.1)
    sub.offer(event(1))
    await first
    sub.take()
    # The timer armed by the first wait fires 0.2 s into this one; it must not end it early.
    elapsed = await timed(sub.ready(0.3))
    assert elapsed == pytest.approx(0.3), elapsed
    assert sub.take() == []


@on_virtual_clock
async def test_a_shorter_wait_than_the_armed_timer_ends_on_time() -> None:
    sub = subscriber()
    first = sub.ready(10)
    sub.offer(event(1))
    await first
    sub.take()
    assert await timed(sub.ready(0.05)) == pytest.approx(0.05)


@on_virtual_clock
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


@on_virtual_clock
async def test_closing_ends_the_wait_and_leaves_the_hub() -> None:
    sub = subscriber()
    waiter = sub.ready(10)
    sub.close("bye")
    assert await timed(waiter) == 0
    assert sub.closed_reason == "bye" and sub.take() == []
    assert sub.hub.subscriber_count == 0 and sub.hub._streams == {}


def test_a_subscriber_over_its_byte_budget_is_dropped_before_its_task_budget() -> None:
    hub = Hub("postgresql://unused", pool=None, buffer=256, buffer_bytes=10_000,  # type: ignore[arg-type]
              measure=event_size)
    sub = hub.subscribe(TaskFilter(user_id="frank"), Holder("frank"))
    for i in range(4):
        sub.offer(Event("deleted", i, f"task_{i}", data={"id": f"task_{i}", "pad": "y" * 2000}))
    assert not sub.closed
    sub.take()  # read: the budget is free again
    for i in range(10):  # ten unread events of ~2 KB: over 10,000 bytes long before 256 tasks
        sub.offer(Event("deleted", i, f"task_{i}", data={"id": f"task_{i}", "pad": "y" * 2000}))
    assert sub.closed and sub.closed_code == "slow_consumer" and "10000 bytes" in (sub.closed_reason or "")
    assert hub.held_by("frank") == 0 and hub.subscriber_count == 0


def test_a_coalesced_event_replaces_its_predecessor_in_the_byte_count() -> None:
    hub = Hub("postgresql://unused", pool=None, buffer=256, buffer_bytes=10_000,  # type: ignore[arg-type]
              measure=event_size)
    sub = hub.subscribe(TaskFilter())
    for i in range(50):  # the same task fifty times: one event of ~2 KB buffered, never over the budget
        sub.offer(Event("deleted", i, "task_1", data={"id": "task_1", "pad": "y" * 2000}))
    assert not sub.closed and [e.seq for e in sub.take()] == [49]


def test_the_per_user_cap_counts_open_subscribers_and_frees_a_place_on_close() -> None:
    hub = Hub("postgresql://unused", pool=None, max_streams=2)  # type: ignore[arg-type]
    a = hub.subscribe(TaskFilter(user_id="gina"), Holder("gina"))
    hub.subscribe(TaskFilter(task_id="task_1", user_id="gina"), Holder("gina"))
    with pytest.raises(TooManyStreams) as over:
        hub.subscribe(TaskFilter(user_id="gina"), Holder("gina"))
    assert over.value.retry_after > 0
    hub.subscribe(TaskFilter(user_id="hal"), Holder("hal"))  # another user's own count
    a.close()
    a.close()  # idempotent: frees one place, not two
    hub.subscribe(TaskFilter(user_id="gina"), Holder("gina"))
    with pytest.raises(TooManyStreams):
        hub.subscribe(TaskFilter(user_id="gina"), Holder("gina"))
    assert hub.subscribe(TaskFilter(user_id="gina"), Holder("gina"), cap=5).holder.user_id == "gina"
