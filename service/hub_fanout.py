"""The hub's fan-out: who is subscribed (indexed by followed task, by owner, by API key, per holding user) and
which subscribers each published change, deletion, output chunk or queue event reaches. Hub (hub.py) feeds it
from its LISTEN connection; the state below is set in Hub.__init__."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import asyncpg

from .hub_subscriber import (
    NOBODY,
    Event,
    Holder,
    Subscriber,
    TaskFilter,
    TaskInfo,
    TooManyStreams,
    json_size,
    output_event,
)
from .logs import outage_logger

log = outage_logger("bgtasks.hub")  # the hub's logger (hub.py logs to it too)

# The fields of a task that can be large; on all-task streams, one whose JSON exceeds `inline_bytes` is sent
# as null and named in the event's `byReference`, with a URL to fetch the task.
LARGE_FIELDS = ("payload", "result_data", "result")

K = TypeVar("K")


class Fanout:
    """Subscribers and publishing, for Hub."""

    buffer: int
    buffer_bytes: int
    inline_bytes: int
    max_streams: int | None
    recent_size: int
    measure: Callable[[Event], int] | None
    last_seq: int | None
    output_seq: int
    _by_task: dict[str, set[Subscriber]]
    _streams: dict[str | None, set[Subscriber]]
    _by_key: dict[int, set[Subscriber]]
    _held: dict[str, int]
    _recent: OrderedDict[str, TaskInfo]
    _changed: asyncio.Event

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

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

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
        large = tuple(c for c in LARGE_FIELDS if row[c] is not None and json_size(row[c]) > self.inline_bytes)
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
