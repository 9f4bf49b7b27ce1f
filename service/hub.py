"""The live-update hub: one dedicated LISTEN connection per API process, fanned out to any number of
subscribers over bounded, coalescing buffers. It reconnects with backoff and resynchronises from the table
after every (re)connect, so a lost connection never loses a terminal event.

Flow: NOTIFY bgtasks_tasks [{"id","status","seq"}, ...] -> ids batched for `batch_window` seconds -> one
`tasks_by_ids` query -> each row published to the subscribers whose filter matches it (streams are indexed by
owner, so a change touches only its owner's and the superusers' subscribers). A subscriber's buffer keeps only
the latest event per task; past `buffer` distinct tasks it is dropped with a reason, and its client resumes
with Last-Event-ID; past `buffer_bytes` of unread events likewise. All-task streams get large fields (payload,
result) by reference, so a slow dashboard holds no large results. Every subscriber records who holds it (user,
API key, expiry): NOTIFY bgtasks_keys (a key revoked, changed or deleted) closes that key's subscribers at once,
and every `recheck_interval` the hub re-checks every held key and expiry. See docs/live-updates.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from . import db
from .errors import RateLimited
from .logs import outage_logger
from .store import events as store
from .store import keys as key_store

log = outage_logger("bgtasks.hub")  # warnings repeat through an outage: throttled

TASKS_CHANNEL = "bgtasks_tasks"
QUEUE_CHANNEL = "bgtasks_queue"
KEYS_CHANNEL = "bgtasks_keys"
OUTPUT_CHANNEL = "bgtasks_output"  # live partial output: {"id","seq"}, a pointer to a task_output row

# The fields of a task that can be large; on all-task streams, one whose JSON exceeds `inline_bytes` is sent
# as null and named in the event's `byReference`, with a URL to fetch the task.
LARGE_FIELDS = ("payload", "result_data", "result")

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
        hub: Hub,
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
        buffer_bytes: int = 1_000_000,
        inline_bytes: int = 16_384,
        max_streams: int | None = None,
        recheck_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        measure: Callable[[Event], int] | None = None,
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
        self.buffer_bytes = buffer_bytes
        self.inline_bytes = inline_bytes
        self.max_streams = max_streams  # per user, on this process; None: no cap
        self.recheck_interval = recheck_interval
        self.clock = clock
        self.measure = measure  # an event's size in bytes (its JSON): all-task streams' byte bound; None: off
        self.rechecks = 0  # completed credential re-checks (a test signal)

        self.last_seq: int | None = None  # highest change number published (None before the first connect)
        self.generation = 0  # completed (re)connects, each followed by a resync
        self.connected = False
        self.listen_pid: int | None = None  # the LISTEN connection's server pid (tests terminate it)

        self._by_task: dict[str, set[Subscriber]] = {}  # subscribeToTask: followers of one task
        self._streams: dict[str | None, set[Subscriber]] = {}  # all-task streams by owner; None: every owner
        self._by_key: dict[int, set[Subscriber]] = {}  # subscribers by the API key they were opened with
        self._held: dict[str, int] = {}  # open subscribers per holding user (the per-user cap)
        self._recent: OrderedDict[str, TaskInfo] = OrderedDict()
        self._pending: dict[str, int] = {}
        self._pending_output: list[tuple[str, int]] = []  # (task id, change number) of notified output
        self.output_seq = 0  # highest change number of output published (a reconnect reads what came after)
        self._pending_wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: asyncpg.Connection | None = None

    # ------------------------------------------------------------ subscribers

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._streams.values()) + sum(len(s) for s in self._by_task.values())

    def subscribe(
        self,
        flt: TaskFilter,
        holder: Holder = NOBODY,
        *,
        cap: int | None = None,
    ) -> Subscriber:
        """A new subscriber. `cap` (default: the hub's `max_streams`) is how many `holder.user_id` may hold:
        one more raises TooManyStreams. All-task streams are bounded by `buffer` tasks and `buffer_bytes`."""
        cap = self.max_streams if cap is None else cap
        user = holder.user_id
        if user is not None and cap is not None and self._held.get(user, 0) >= cap:
            raise TooManyStreams(user, cap)
        if flt.task_id is not None:
            sub = Subscriber(self, flt, 1, holder)  # one event: bounded by the size of one row
            self._by_task.setdefault(flt.task_id, set()).add(sub)
        else:
            sub = Subscriber(self, flt, self.buffer, holder, limit_bytes=self.buffer_bytes)
            self._streams.setdefault(flt.user_id, set()).add(sub)
        if user is not None:
            self._held[user] = self._held.get(user, 0) + 1
        if holder.key_id is not None:
            self._by_key.setdefault(holder.key_id, set()).add(sub)
        self._signal()
        return sub

    def held_by(self, user_id: str) -> int:
        """How many open subscribers `user_id` holds on this process."""
        return self._held.get(user_id, 0)

    def _remove(self, sub: Subscriber) -> None:
        if sub.filter.task_id is not None:
            removed = _discard(self._by_task, sub.filter.task_id, sub)
        else:
            removed = _discard(self._streams, sub.filter.user_id, sub)
        holder = sub.holder
        if removed and holder.user_id is not None:
            left = self._held.get(holder.user_id, 0) - 1
            if left > 0:
                self._held[holder.user_id] = left
            else:
                self._held.pop(holder.user_id, None)
        if holder.key_id is not None:
            _discard(self._by_key, holder.key_id, sub)
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
            asyncio.create_task(self._recheck_loop(), name="hub-recheck"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        for sub in self._all_subscribers():
            sub.close("server shutting down; reconnect with Last-Event-ID", "shutdown")

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
                conn = self._conn = await db.connect(self.url, name="bgtasks api listen")
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(TASKS_CHANNEL, self._on_tasks)
                await conn.add_listener(QUEUE_CHANNEL, self._on_queue)
                await conn.add_listener(KEYS_CHANNEL, self._on_keys)
                await conn.add_listener(OUTPUT_CHANNEL, self._on_output)
                # LISTEN first, then read the table: a change in between is both notified and read.
                await self._resync()
                await self._recheck_keys()  # a key revoked while nobody listened
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
            self.output_seq = self.last_seq
            return
        if self._streams:  # output written while nobody listened, before the rows (output precedes its end)
            while True:
                chunks = await store.task_output_since(self.pool, self.output_seq, limit=self.resync_page)
                self._publish_output(chunks)
                if len(chunks) < self.resync_page:
                    break
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

    def _on_output(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            self._pending_output.append((str(data["id"]), int(data["seq"])))
        except (ValueError, KeyError, TypeError):
            log.warning("hub: unreadable output NOTIFY payload %.200r", payload)
            return
        self._pending_wake.set()

    def _on_keys(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            key_id, change = int(data["id"]), str(data.get("change") or "revoked")
        except (ValueError, KeyError, TypeError):
            log.warning("hub: unreadable key NOTIFY payload %.200r", payload)
            return
        self.close_key(key_id, change)

    def close_key(self, key_id: int, change: str = "revoked") -> int:
        """Close every subscriber opened with API key `key_id` (or a read token it minted); how many."""
        subs = list(self._by_key.get(key_id, ()))
        for sub in subs:
            sub.close(
                f"credential {change}: API key {key_id} was {change}; this stream is closed (read tokens it "
                "minted are void too)",
                "revoked",
            )
        if subs:
            log.info("hub: closed %d streams of API key %d (%s)", len(subs), key_id, change)
        return len(subs)

    async def recheck(self) -> None:
        """Close subscribers whose credential expired, or whose key no longer exists or is revoked."""
        now = self.clock()
        for sub in [s for s in self._all_subscribers() if s.holder.expires_at is not None]:
            if sub.holder.expires_at is not None and sub.holder.expires_at <= now:
                sub.close("credential expired: the read token of this stream expired; mint a new one", "expired")
        await self._recheck_keys()
        self.rechecks += 1
        self._signal()

    async def _recheck_keys(self) -> None:
        held = list(self._by_key)
        if not held:
            return
        live = await key_store.live_api_keys(self.pool, held)
        for key_id in held:
            if key_id not in live:
                self.close_key(key_id)

    async def _recheck_loop(self) -> None:
        """Every `recheck_interval`, re-check every held credential (a lost NOTIFY, an expired token)."""
        while True:
            await asyncio.sleep(self.recheck_interval)
            try:
                await self.recheck()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hub: re-checking stream credentials failed (%s: %s); retrying",
                            type(exc).__name__, exc)

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
            output, self._pending_output = self._pending_output, []
            if output:  # before the rows: a task's last output precedes its completion
                await self._flush_output(output)
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

    async def _flush_output(self, pointers: list[tuple[str, int]]) -> None:
        if not self._streams:  # only all-task streams carry output (seed two's followers never see it)
            self.output_seq = max(self.output_seq, *(seq for _, seq in pointers))
            return
        try:
            chunks = await store.task_output_chunks(self.pool, pointers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("hub: reading %d output chunks failed (%s); retrying", len(pointers), exc)
            self._pending_output[:0] = pointers
            self._pending_wake.set()
            await asyncio.sleep(0.2)
            return
        self._publish_output(chunks)

    # ------------------------------------------------------------ publishing

    def _publish_output(self, chunks: Iterable[asyncpg.Record]) -> None:
        """Each chunk of live output to the all-task streams that see its task (in the order written)."""
        for chunk in chunks:
            seq = chunk["seq"]
            self.output_seq = max(self.output_seq, seq)
            info = TaskInfo(chunk["id"], chunk["change_seq"], chunk["user_id"], str(chunk["status"]),
                            chunk["task_type"], chunk["project_id"])
            event = output_event(chunk)
            for sub in self._streams_seeing(info.user_id):
                if sub.filter.matches(info, None):
                    sub.offer(event)


    def _publish_rows(self, rows: Iterable[asyncpg.Record]) -> None:
        for row in rows:
            info = TaskInfo.of(row)
            previous = self._recent.get(info.id)
            if previous is not None and previous.seq >= info.seq:
                continue  # already published this state (or a newer one)
            self._remember(info)
            self.last_seq = max(self.last_seq or 0, info.seq)
            followers = self._by_task.get(info.id)
            if followers:
                event = Event("task", info.seq, info.id, row=row)  # seed two's followers: results inline
                for sub in list(followers):  # a copy: a closing subscriber leaves the set
                    if sub.filter.sees(info):
                        sub.offer(event)
            stream_event: Event | None = None
            for sub in self._streams_seeing(info.user_id):  # a copy: an overflowing subscriber leaves
                if sub.filter.matches(info, previous):
                    if stream_event is None:
                        stream_event = self.stream_event(row)
                    sub.offer(stream_event)

    def stream_event(self, row: asyncpg.Record) -> Event:
        """The event all-task streams get for a row: fields larger than `inline_bytes` left out (by reference),
        so neither the event nor a slow subscriber's buffer holds a large result."""
        large = tuple(c for c in LARGE_FIELDS if row[c] is not None and _json_size(row[c]) > self.inline_bytes)
        if not large:
            return Event("task", row["change_seq"], row["id"], row=row)
        trimmed = {k: (None if k in large else v) for k, v in row.items()}
        return Event("task", row["change_seq"], row["id"], row=trimmed, by_reference=large)

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


def output_event(chunk: Mapping[str, Any]) -> Event:
    """The `output` event of one chunk of live output: the text written since the task's previous one."""
    data = {"id": chunk["id"], "attempt": chunk["attempt"], "text": chunk["chunk"]}
    return Event("output", chunk["seq"], chunk["id"], data=data)


def _discard(index: dict[K, set[Subscriber]], key: K, sub: Subscriber) -> bool:
    """Take `sub` out of an index, and its key with the last one (so an idle hub holds nothing); whether it
    was there."""
    subs = index.get(key)
    if subs is None or sub not in subs:
        return False
    subs.discard(sub)
    if not subs:
        del index[key]
    return True


def _json_size(value: Any) -> int:
    """Bytes of a JSON value as a stream would send it (short strings answered without serialising)."""
    if isinstance(value, str):
        return len(value) + 2
    return len(json.dumps(value, separators=(",", ":"), default=str))


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
