"""A Dramatiq broker whose queue is the background_tasks table: the row is the message.

consume = claim rows (only as many as the process has free threads), ack = complete (batched, conditional
on the attempt that claimed it), nack = fail (retry with backoff or error), requeue = hand back to pending.
No delay queues: a delay is `run_at` on the row. The worker's parts (service/worker/) do the claiming
(`consumer`) and write the outcomes (`outcomes`); the broker is handed them, not the whole runtime.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.broker import Consumer, MessageProxy

if TYPE_CHECKING:
    from .worker.consumer import Claimer
    from .worker.in_flight import InFlightTable
    from .worker.outcomes import Outcomes

Enqueue = Callable[..., str]  # (task_type, payload, *, delay_ms, user_id) -> task id

QUEUE = "bgtasks"
CONSUMER_TIMEOUT_MS = 100
log = logging.getLogger("bgtasks.broker")


def message_for(row: dict[str, Any]) -> dramatiq.Message[Any]:
    """The Dramatiq message of a claimed row: the actor is the task type, the arguments the task id and the
    attempt that claimed it (a message left over from an earlier claim of the same task never runs it)."""
    return dramatiq.Message(
        queue_name=QUEUE, actor_name=row["task_type"], args=(row["id"], row["attempt"]), kwargs={},
        options={"attempt": row["attempt"]}, message_id=row["id"],
        message_timestamp=int(row["created_at"].timestamp() * 1000),
    )


class PostgresBroker(dramatiq.Broker):
    def __init__(self, claimer: Claimer, outcomes: Outcomes, in_flight: InFlightTable, enqueue: Enqueue,
                 middleware: list[dramatiq.Middleware]) -> None:
        super().__init__(middleware=middleware)
        self.claimer = claimer
        self.outcomes = outcomes
        self.in_flight = in_flight
        self._enqueue = enqueue
        self.queues: set[str] = set()

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 100) -> Consumer:
        # `prefetch` is ignored on purpose: Dramatiq's default (2 x threads) would park claimed rows in
        # `processing` behind busy threads. The claimer claims only for free slots.
        # `timeout` (Dramatiq's worker timeout) is not ours either: __next__ returns within CONSUMER_TIMEOUT_MS
        # (tasks claimed ahead are checked that often, and shutdown never hangs).
        return PostgresConsumer(self.claimer, self.outcomes, timeout_ms=CONSUMER_TIMEOUT_MS)

    def declare_queue(self, queue_name: str) -> None:
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        """`actor.send(**payload)` from Python: a task row of the actor's type, owned by user "system"."""
        task_id = self._enqueue(message.actor_name, dict(message.kwargs), delay_ms=delay,
                                       user_id=str(message.options.get("user_id", "system")))
        return message.copy(message_id=task_id)

    def get_declared_queues(self) -> set[str]:
        return self.queues.copy()

    def get_declared_delay_queues(self) -> set[str]:
        return set()

    def flush(self, queue_name: str) -> None:
        raise NotImplementedError("delete tasks with SQL or the API; the table is the queue")

    def flush_all(self) -> None:
        raise NotImplementedError("delete tasks with SQL or the API; the table is the queue")

    def join(self, queue_name: str, *, timeout: int | None = None) -> None:
        self.in_flight.wait_idle(timeout_s=None if timeout is None else timeout / 1000)


class PostgresConsumer(Consumer):
    """Runs on Dramatiq's consumer thread; ack and nack run on worker threads (the outcomes are thread-safe)."""

    def __init__(self, claimer: Claimer, outcomes: Outcomes, timeout_ms: int) -> None:
        self.claimer = claimer
        self.outcomes = outcomes
        self.timeout_s = timeout_ms / 1000
        self.buffer: collections.deque[MessageProxy] = collections.deque()

    def __iter__(self) -> PostgresConsumer:
        return self

    def __next__(self) -> MessageProxy | None:
        if self.buffer:
            return self.buffer.popleft()
        rows = self.claimer.claim_if_due()
        if rows:
            self.buffer.extend(MessageProxy(message_for(r)) for r in rows)
            return self.buffer.popleft()
        self.claimer.wait_for_work(self.timeout_s)  # returns within the worker timeout: shutdown never hangs
        return None

    def ack(self, message: MessageProxy) -> None:
        self.outcomes.finish_ok(message)

    def nack(self, message: MessageProxy) -> None:
        self.outcomes.finish_failed(message)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        for message in messages:
            self.outcomes.release(message.message_id, int(message.options["attempt"]))

    def close(self) -> None:
        while self.buffer:
            m = self.buffer.popleft()
            self.outcomes.release(m.message_id, int(m.options["attempt"]))
        time.sleep(0)
