"""What one live stream holds: the task filter it was opened with, who holds it (Holder), and its bounded,
coalescing buffer of events (Subscriber), which the hub (hub.py, fan-out in hub_fanout.py) offers events to."""

from __future__ import annotations

import asyncio
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from .errors import RateLimited

if TYPE_CHECKING:
    from .hub_fanout import Fanout

# An event loop may run a timer up to a clock tick early; a wait that ends this close to its deadline is over.
TIMER_SLACK = 0.002

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """The fields the hub routes on (kept per recently seen task, so deletes reach the right owner)."""

    id: str
    seq: int
    user_id: str
    status: str
    task_type: str
    project_id: str | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> TaskInfo:
        return cls(
            row["id"],
            row["change_seq"],
            row["user_id"],
            str(row["status"]),
            row["task_type"],
            row["project_id"],
        )


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a stream: the user it counts against (the per-user cap), the API key it was opened with (None:
    trusted proxy or dev mode, nothing to revoke), and when its credential expires (read tokens; seconds of
    the hub's clock, wall time by default)."""

    user_id: str | None = None
    key_id: int | None = None
    expires_at: float | None = None


NOBODY = Holder()


class TooManyStreams(RateLimited):
    """The user has as many streams open on this process as they may (HTTP 429 with Retry-After)."""

    def __init__(self, user_id: str, cap: int) -> None:
        super().__init__(
            f"streams: {user_id!r} already has {cap} live streams open on this server (the per-user cap, "
            "BGTASKS_MAX_STREAMS_PER_USER or user_limits.max_streams); close one, or retry later",
            retry_after=10,
        )
        self.field = "streams"


@dataclass(frozen=True)
class TaskFilter:
    """Which events a subscriber wants. user_id None: every user's tasks (superusers only)."""

    user_id: str | None = None
    statuses: frozenset[str] | None = None
    task_types: frozenset[str] | None = None
    project_id: str | None = None
    task_id: str | None = None
    task_ids: frozenset[str] | None = None  # a read token that names its tasks
    queue: bool = False  # queue settings events too

    def sees(self, info: TaskInfo) -> bool:
        """Whether the caller may see this task at all (owner, type, project; not status)."""
        return (
            (self.user_id is None or info.user_id == self.user_id)
            and (self.task_id is None or info.id == self.task_id)
            and (self.task_ids is None or info.id in self.task_ids)
            and (self.task_types is None or info.task_type in self.task_types)
            and (self.project_id is None or info.project_id == self.project_id)
        )

    def matches(self, info: TaskInfo, previous: TaskInfo | None) -> bool:
        """A change is delivered when the task's new status is wanted, or its previous one was (so a
        dashboard filtering on `processing` sees a task leave the set)."""
        if not self.sees(info):
            return False
        if self.statuses is None:
            return True
        return info.status in self.statuses or (previous is not None and previous.status in self.statuses)


class Event:
    """One change as subscribers receive it; shared by every subscriber, serialised at most once per form
    (the JSON text, the SSE frame bytes) however many subscribers read it."""

    __slots__ = ("_forms", "by_reference", "data", "kind", "row", "seq", "size", "task_id")

    def __init__(
        self,
        kind: str,
        seq: int,
        task_id: str | None = None,
        row: Mapping[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        by_reference: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind  # "task" | "deleted" | "queue" | "output" (and "ready" | "dropped", made by a stream)
        self.seq = seq
        self.task_id = task_id
        self.row = row
        self.data = data
        self.by_reference = by_reference  # columns left out of `row` for their size (all-task streams)
        self.size = -1  # bytes it costs a subscriber's buffer (the hub's `measure`, taken once); -1: not yet
        self._forms: dict[Hashable, Any] = {}

    @property
    def key(self) -> str:
        if self.kind == "output":  # every piece of output is delivered; only task states coalesce
            return f"{self.task_id}#{self.seq}"
        return self.task_id if self.task_id is not None else self.kind

    def form(self, name: Hashable, build: Callable[[Event], T]) -> T:
        """`build(self)` computed once per name (e.g. the task JSON text) whatever the number of readers."""
        try:
            value: T = self._forms[name]
        except KeyError:
            value = self._forms[name] = build(self)
        return value

    def __repr__(self) -> str:
        return f"Event({self.kind}, seq={self.seq}, task={self.task_id})"


class Subscriber:
    """A bounded, coalescing buffer: the latest event per task, at most `limit` tasks, then dropped.

    Waiting is the hot path of a fan-out (one wake per subscriber per change), so it allocates as little as
    it can: `ready()` hands out a bare future that `offer` resolves (`asyncio.wait_for` would create a Task per
    wait on Python 3.11, `asyncio.Event` a coroutine), and the keep-alive timer is re-armed only when it fires,
    not per wait. Whatever a wait allocates lives until the next change and so reaches the older GC
    generations: the more it is, the sooner a full collection comes, and that pauses every subscriber."""

    def __init__(
        self,
        hub: Fanout,
        flt: TaskFilter,
        limit: int,
        holder: Holder = NOBODY,
        *,
        limit_bytes: int | None = None,
    ) -> None:
        self.hub = hub
        self.filter = flt
        self.limit = limit
        self.holder = holder
        self.limit_bytes = limit_bytes if hub.measure is not None else None
        self.last_seq = 0  # the highest change number the reader has taken (named in a drop reason)
        self.closed_reason: str | None = None
        self.closed_code: str | None = None  # slow_consumer | revoked | expired | shutdown | closed
        self._buffer: OrderedDict[str, Event] = OrderedDict()
        self._bytes = 0  # measured size of what the buffer holds (with a byte limit)
        self._waiter: asyncio.Future[None] | None = None  # the reader's, while it waits
        self._deadline = 0.0  # loop time at which the waiting reader is to be woken with nothing
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def offer(self, event: Event) -> None:
        if self.closed_reason is not None:
            return
        key = event.key
        previous = self._buffer.get(key)
        if previous is not None:
            self._buffer[key] = event
            self._buffer.move_to_end(key)
        elif len(self._buffer) >= self.limit:
            self._close(
                f"slow consumer: more than {self.limit} tasks changed before this client read them; "
                f"reconnect with Last-Event-ID {self.last_seq} to catch up",
                "slow_consumer",
            )
            return
        else:
            self._buffer[key] = event
        if self.limit_bytes is not None:
            size = event.size
            if size < 0:  # measured once per event, however many subscribers take it
                size = event.size = self.hub.measure(event)  # type: ignore[misc]  # set when limit_bytes is
            self._bytes += size - (previous.size if previous is not None else 0)
            if self._bytes > self.limit_bytes:
                self._close(
                    f"slow consumer: more than {self.limit_bytes} bytes of events waited for this client; "
                    f"reconnect with Last-Event-ID {self.last_seq} to catch up",
                    "slow_consumer",
                )
                return
        self._wake()

    def ready(self, wait_s: float | None = None) -> asyncio.Future[None]:
        """A future that resolves once there is something to take (or the subscriber closed), or after
        `wait_s` seconds with nothing; then call `take()`. One reader at a time."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if self._buffer or self.closed_reason is not None:
            waiter.set_result(None)
            return waiter
        self._waiter = waiter
        self._deadline = math.inf if wait_s is None else loop.time() + wait_s
        if self._deadline < math.inf and (self._timer is None or self._timer_at > self._deadline):
            self._arm(loop, self._deadline)
        return waiter

    def take(self) -> list[Event]:
        """Every buffered event, oldest first ([] when there is none, or once closed)."""
        batch = list(self._buffer.values())
        self._buffer.clear()
        self._bytes = 0
        for ev in batch:
            self.last_seq = max(self.last_seq, ev.seq)
        return batch

    async def next_batch(self, wait_s: float | None = None) -> list[Event]:
        """Every buffered event, oldest first; [] after `wait_s` seconds with nothing, or once closed."""
        await self.ready(wait_s)
        return self.take()

    def close(self, reason: str = "closed", code: str = "closed") -> None:
        """Leave the hub; idempotent. Releases the buffer at once."""
        self._close(reason, code)

    def _close(self, reason: str, code: str) -> None:
        if self.closed_reason is None:
            self.closed_reason, self.closed_code = reason, code
        self._buffer.clear()
        self._bytes = 0
        self._wake()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.hub._remove(self)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = loop.call_at(at, self._on_timer, loop), at

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._waiter is None or self.closed_reason is not None:
            return  # the reader is busy; its next wait arms the timer again
        if loop.time() >= self._deadline - TIMER_SLACK:
            self._wake()
        else:
            self._arm(loop, self._deadline)  # woken by a change since the timer was set: wait on

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def output_event(chunk: Mapping[str, Any]) -> Event:
    """The `output` event of one chunk of live output: the text written since the task's previous one."""
    data = {"id": chunk["id"], "attempt": chunk["attempt"], "text": chunk["chunk"]}
    return Event("output", chunk["seq"], chunk["id"], data=data)


def json_size(value: Any) -> int:
    """Bytes of a JSON value as a stream would send it (short strings answered without serialising)."""
    if isinstance(value, str):
        return len(value) + 2
    return len(json.dumps(value, separators=(",", ":"), default=str))
