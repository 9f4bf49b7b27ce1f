"""The live-update hub: one dedicated LISTEN connection per API process, fanned out to any number of
subscribers over bounded, coalescing buffers. It reconnects with backoff and resynchronises from the table
after every (re)connect, so a lost connection never loses a terminal event.

Flow: NOTIFY bgtasks_tasks [{"id","status","seq"}, ...] -> ids batched for `batch_window` seconds -> one
`tasks_by_ids` query -> each row published to the subscribers whose filter matches it (streams are indexed by
owner, so a change touches only its owner's and the superusers' subscribers). A subscriber's buffer keeps only
the latest event per task; past `buffer` distinct tasks it is dropped with a reason, and its client resumes
with Last-Event-ID. See docs/live-updates.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from . import db
from .store import events as store

log = logging.getLogger("bgtasks.hub")

TASKS_CHANNEL = "bgtasks_tasks"
QUEUE_CHANNEL = "bgtasks_queue"

# Change numbers are taken when a row changes, not when its transaction commits, so a transaction that took
# an earlier number can commit after a later one. Every read "since seq N" therefore starts RESUME_OVERLAP
# numbers earlier; the repeats are harmless because every event carries the task's latest state.
RESUME_OVERLAP = 1000

# An event loop may run a timer up to a clock tick early; a wait that ends this close to its deadline is over.
TIMER_SLACK = 0.002

K = TypeVar("K")
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


@dataclass(frozen=True)
class TaskFilter:
    """Which events a subscriber wants. user_id None: every user's tasks (superusers only)."""

    user_id: str | None = None
    statuses: frozenset[str] | None = None
    task_types: frozenset[str] | None = None
    project_id: str | None = None
    task_id: str | None = None
    queue: bool = False  # queue settings events too

    def sees(self, info: TaskInfo) -> bool:
        """Whether the caller may see this task at all (owner, type, project; not status)."""
        return (
            (self.user_id is None or info.user_id == self.user_id)
            and (self.task_id is None or info.id == self.task_id)
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

    __slots__ = ("_forms", "data", "kind", "row", "seq", "task_id")

    def __init__(
        self,
        kind: str,
        seq: int,
        task_id: str | None = None,
        row: asyncpg.Record | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind  # "task" | "deleted" | "queue" (and "ready" | "dropped", made by a stream itself)
        self.seq = seq
        self.task_id = task_id
        self.row = row
        self.data = data
        self._forms: dict[Hashable, Any] = {}

    @property
    def key(self) -> str:
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

    def __init__(self, hub: Hub, flt: TaskFilter, limit: int) -> None:
        self.hub = hub
        self.filter = flt
        self.limit = limit
        self.last_seq = 0  # the highest change number the reader has taken (named in a drop reason)
        self.closed_reason: str | None = None
        self._buffer: OrderedDict[str, Event] = OrderedDict()
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
        if key in self._buffer:
            self._buffer[key] = event
            self._buffer.move_to_end(key)
        elif len(self._buffer) >= self.limit:
            self._close(
                f"slow consumer: more than {self.limit} tasks changed before this client read them; "
                f"reconnect with Last-Event-ID {self.last_seq} to catch up"
            )
            return
        else:
            self._buffer[key] = event
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
        for ev in batch:
            self.last_seq = max(self.last_seq, ev.seq)
        return batch

    async def next_batch(self, wait_s: float | None = None) -> list[Event]:
        """Every buffered event, oldest first; [] after `wait_s` seconds with nothing, or once closed."""
        await self.ready(wait_s)
        return self.take()

    def close(self, reason: str = "closed") -> None:
        """Leave the hub; idempotent. Releases the buffer at once."""
        self._close(reason)

    def _close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self._buffer.clear()
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


class Hub:
    """One per API process. `start()`, `subscribe(filter)`, `stop()`."""

    def __init__(
        self,
        url: str,
        pool: asyncpg.Pool,
        *,
        buffer: int = 256,
        batch_window: float = 0.002,
        backoff_base: float = 0.1,
        backoff_max: float = 10.0,
        health_interval: float = 10.0,
        recent_size: int = 50_000,
        resync_page: int = 1000,
    ) -> None:
        self.url = url
        self.pool = pool
        self.buffer = buffer
        self.batch_window = batch_window
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.health_interval = health_interval
        self.recent_size = recent_size
        self.resync_page = resync_page

        self.last_seq: int | None = None  # highest change number published (None before the first connect)
        self.generation = 0  # completed (re)connects, each followed by a resync
        self.connected = False
        self.listen_pid: int | None = None  # the LISTEN connection's server pid (tests terminate it)

        self._by_task: dict[str, set[Subscriber]] = {}  # subscribeToTask: followers of one task
        self._streams: dict[str | None, set[Subscriber]] = {}  # all-task streams by owner; None: every owner
        self._recent: OrderedDict[str, TaskInfo] = OrderedDict()
        self._pending: dict[str, int] = {}
        self._pending_wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: asyncpg.Connection | None = None

    # ------------------------------------------------------------ subscribers

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._streams.values()) + sum(len(s) for s in self._by_task.values())

    def subscribe(self, flt: TaskFilter) -> Subscriber:
        sub = Subscriber(self, flt, 1 if flt.task_id is not None else self.buffer)
        if flt.task_id is not None:
            self._by_task.setdefault(flt.task_id, set()).add(sub)
        else:
            self._streams.setdefault(flt.user_id, set()).add(sub)
        self._signal()
        return sub

    def _remove(self, sub: Subscriber) -> None:
        if sub.filter.task_id is not None:
            _discard(self._by_task, sub.filter.task_id, sub)
        else:
            _discard(self._streams, sub.filter.user_id, sub)
        self._signal()

    def _all_subscribers(self) -> list[Subscriber]:
        return [s for index in (self._streams, self._by_task) for subs in index.values() for s in subs]

    def _streams_seeing(self, owner: str) -> list[Subscriber]:
        """The all-task streams that may see a task of `owner`: the owner's, and those of every owner."""
        return [*self._streams.get(owner, ()), *self._streams.get(None, ())]

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="hub-listen"),
            asyncio.create_task(self._flush_loop(), name="hub-flush"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        for sub in self._all_subscribers():
            sub.close("server shutting down; reconnect with Last-Event-ID")

    async def wait_until(self, predicate: Callable[[], bool], within_s: float, what: str) -> None:
        """Test signal: return once predicate() holds (re-checked on every hub state change)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"hub: {what} did not happen within {within_s}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------ the LISTEN connection

    async def _run(self) -> None:
        attempt = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = self._conn = await db.connect(self.url)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(TASKS_CHANNEL, self._on_tasks)
                await conn.add_listener(QUEUE_CHANNEL, self._on_queue)
                # LISTEN first, then read the table: a change in between is both notified and read.
                await self._resync()
                self.listen_pid = conn.get_server_pid()
                self.connected = True
                self.generation += 1
                attempt = 0
                self._signal()
                log.info("hub listening (generation %d, seq %s)", self.generation, self.last_seq)
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), self.health_interval)
                    except TimeoutError:
                        # A silent network loss sends no FIN; a query with a timeout finds it.
                        await conn.fetchval("SELECT 1", timeout=self.health_interval)
                log.warning("hub: LISTEN connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hub: LISTEN connection failed (%s: %s); retrying", type(exc).__name__, exc)
            finally:
                self.connected = False
                self.listen_pid = None
                self._conn = None
                if conn is not None:
                    conn.terminate()
                self._signal()
            delay = min(self.backoff_max, self.backoff_base * 2 ** min(attempt, 20)) * random.uniform(
                0.5, 1.0
            )
            attempt += 1
            await asyncio.sleep(delay)

    async def _resync(self) -> None:
        """Publish what changed while nobody listened: rows changed since the last seq seen (minus the
        overlap), deletions of followed tasks, and the queue settings."""
        if self.last_seq is None:
            # First connect: subscribers read their own starting state; start from now.
            self.last_seq = await store.max_change_seq(self.pool)
            return
        since = max(0, self.last_seq - RESUME_OVERLAP)
        while True:
            rows = await store.tasks_changed_since(self.pool, since, limit=self.resync_page)
            self._publish_rows(rows)
            if len(rows) < self.resync_page:
                break
            since = rows[-1]["change_seq"]
        followed = list(self._by_task)
        if followed:
            present = {r["id"] for r in await store.tasks_by_ids(self.pool, followed)}
            for tid in followed:
                if tid not in present:
                    self._publish_deleted(tid, self.last_seq or 0)
        queue = await store.queue_settings_event(self.pool)
        if queue is not None:
            self._publish_queue(_queue_data(dict(queue)))

    def _on_tasks(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            entries = json.loads(payload)
        except ValueError:
            log.warning("hub: unreadable NOTIFY payload %.200r", payload)
            return
        for e in entries:
            tid, seq = str(e.get("id")), int(e.get("seq") or 0)
            self._pending[tid] = max(seq, self._pending.get(tid, 0))
        self._pending_wake.set()

    def _on_queue(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        self._publish_queue(_queue_data(data))

    async def _flush_loop(self) -> None:
        """Batch notified ids for a moment, read their rows in one query, publish."""
        while True:
            await self._pending_wake.wait()
            await asyncio.sleep(self.batch_window)
            self._pending_wake.clear()
            batch, self._pending = self._pending, {}
            if batch.pop("*", None) is not None:  # TRUNCATE
                self._publish_deleted("*", 0)
            if not batch:
                continue
            if not self._streams and not self._by_task.keys() & batch.keys():
                # Nobody to tell: skip the read (an idle API process costs the database nothing per change).
                self.last_seq = max(self.last_seq or 0, *batch.values())
                continue
            try:
                rows = await store.tasks_by_ids(self.pool, list(batch))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hub: reading %d notified tasks failed (%s); retrying", len(batch), exc)
                for tid, seq in batch.items():
                    self._pending[tid] = max(seq, self._pending.get(tid, 0))
                self._pending_wake.set()
                await asyncio.sleep(0.2)
                continue
            self._publish_rows(rows)
            found = {r["id"] for r in rows}
            for tid, seq in batch.items():
                if tid not in found:
                    self._publish_deleted(tid, seq)

    # ------------------------------------------------------------ publishing

    def _publish_rows(self, rows: Iterable[asyncpg.Record]) -> None:
        for row in rows:
            info = TaskInfo.of(row)
            previous = self._recent.get(info.id)
            if previous is not None and previous.seq >= info.seq:
                continue  # already published this state (or a newer one)
            self._remember(info)
            self.last_seq = max(self.last_seq or 0, info.seq)
            event = Event("task", info.seq, info.id, row=row)
            for sub in list(self._by_task.get(info.id, ())):  # a copy: a closing subscriber leaves the set
                if sub.filter.sees(info):
                    sub.offer(event)
            for sub in self._streams_seeing(info.user_id):  # a copy: an overflowing subscriber leaves
                if sub.filter.matches(info, previous):
                    sub.offer(event)

    def _publish_deleted(self, task_id: str, seq: int) -> None:
        info = self._recent.pop(task_id, None)
        event = Event("deleted", seq, task_id, data={"id": task_id})
        if task_id == "*":
            targets = self._all_subscribers()
        elif info is not None:
            streams = [s for s in self._streams_seeing(info.user_id) if s.filter.sees(info)]
            targets = [*self._by_task.get(task_id, ()), *streams]
        else:
            # Without the owner (a task this hub never saw), only those who see every task hear of it.
            targets = [*self._by_task.get(task_id, ()), *self._streams.get(None, ())]
        for sub in targets:
            sub.offer(event)

    def _publish_queue(self, data: dict[str, Any]) -> None:
        event = Event("queue", self.last_seq or 0, data=data)
        for sub in [s for subs in self._streams.values() for s in subs if s.filter.queue]:
            sub.offer(event)

    def _remember(self, info: TaskInfo) -> None:
        self._recent[info.id] = info
        self._recent.move_to_end(info.id)
        while len(self._recent) > self.recent_size:
            self._recent.popitem(last=False)


def _discard(index: dict[K, set[Subscriber]], key: K, sub: Subscriber) -> None:
    """Take `sub` out of an index, and its key with the last one (so an idle hub holds nothing)."""
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]


def _queue_data(d: dict[str, Any]) -> dict[str, Any]:
    names = {
        "is_active": "isActive",
        "poll_interval": "pollInterval",
        "max_concurrent_tasks": "maxConcurrentTasks",
        "retry_base_delay_ms": "retryBaseDelayMs",
        "retry_max_delay_ms": "retryMaxDelayMs",
        "updated_at": "updatedAt",
    }
    out = {names.get(k, k): v for k, v in d.items()}
    if "updatedAt" in out and hasattr(out["updatedAt"], "isoformat"):
        out["updatedAt"] = out["updatedAt"].isoformat()
    return out
