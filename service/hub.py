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
and every `recheck_interval` the hub re-checks every held key and expiry. See docs/live-updates.md. Who is
subscribed and what each change reaches: hub_fanout.py; one stream's filter and buffer: hub_subscriber.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import asyncpg

from . import db
from .backoff import Backoff
from .hub_fanout import LARGE_FIELDS, Fanout, log
from .hub_subscriber import (
    NOBODY,
    Event,
    Holder,
    Subscriber,
    TaskFilter,
    TaskInfo,
    TooManyStreams,
    output_event,
)
from .store import events as store
from .store import keys as key_store

# Re-exported: the API (api/events.py, api/app.py) and the tests import these from bgtasks.hub.
__all__ = ["LARGE_FIELDS", "NOBODY", "RESUME_OVERLAP", "Event", "Holder", "Hub", "Subscriber", "TaskFilter", "TaskInfo",
           "TooManyStreams", "output_event"]


TASKS_CHANNEL = "bgtasks_tasks"
QUEUE_CHANNEL = "bgtasks_queue"
KEYS_CHANNEL = "bgtasks_keys"
OUTPUT_CHANNEL = "bgtasks_output"  # live partial output: {"id","seq"}, a pointer to a task_output row

# Change numbers are taken when a row changes, not when its transaction commits, so a transaction that took
# an earlier number can commit after a later one. Every read "since seq N" therefore starts RESUME_OVERLAP
# numbers earlier; the repeats are harmless because every event carries the task's latest state.
RESUME_OVERLAP = 1000


class Hub(Fanout):
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

    # ------------------------------------------------------------ the LISTEN connection

    async def _run(self) -> None:
        backoff = Backoff(base=self.backoff_base, cap=self.backoff_max, jitter=0.5)
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
                backoff.reset()
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
            await asyncio.sleep(backoff.next())

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
