"""How many tasks to claim and when (pure: no threads, no I/O; every decision takes `now`).

Claiming ahead (short tasks only): up to CLAIM_AHEAD_PER_THREAD tasks per slot wait in the process, fetched
up to CLAIM_BATCH_PER_THREAD per slot in one round trip, so one batch runs while the next is fetched. A task
claimed ahead waits for a slot at most CLAIM_AHEAD_MAX_WAIT_S, then goes back to pending; a task running
for longer than that also stops claiming ahead (what would wait behind it could wait long)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

CLAIM_AHEAD_PER_THREAD = 3
CLAIM_BATCH_PER_THREAD = 2
CLAIM_AHEAD_MAX_WAIT_S = 0.2
RETRY_AFTER_FAILED_CLAIM_S = 0.5


class Held(Protocol):
    """What the policy sees of a task the worker holds (times on the same monotonic clock as `now`)."""

    @property
    def claimed_at(self) -> float: ...

    @property
    def started_at(self) -> float | None: ...  # None: claimed ahead, no slot has started it yet


@dataclass
class ClaimPolicy:
    """The claim-sizing and polling decisions of one worker process."""

    concurrency: int
    claim_ahead_s: float  # claim ahead only while tasks average less than this (0: never)
    poll_interval_s: float = 5.0
    avg_run_s: float | None = None  # moving average of this worker's run times; None: no evidence
    next_poll: float = 0.0  # claim at start

    # ------------------------------------------------------------------ how many
    def lookahead(self, now: float, held: Collection[Held]) -> int:
        """How many tasks to hold beyond the slots: CLAIM_AHEAD_PER_THREAD per slot while tasks are short,
        else none. (Under max_concurrent_tasks a task claimed ahead counts as running: the claim enforces it.)"""
        if self.avg_run_s is None or self.avg_run_s >= self.claim_ahead_s:
            return 0
        if any(h.started_at is not None and now - h.started_at > CLAIM_AHEAD_MAX_WAIT_S for h in held):
            return 0
        return CLAIM_AHEAD_PER_THREAD * self.concurrency

    def free(self, now: float, held: Collection[Held]) -> int:
        """Places not taken: the slots plus the room ahead, less what is held."""
        return self.concurrency + self.lookahead(now, held) - len(held)

    def claim_size(self, now: float, held: Collection[Held]) -> int:
        """How many to claim now: the free places. Claiming ahead, batches of up to CLAIM_BATCH_PER_THREAD
        per slot: one batch runs while the next is fetched. While tasks claimed ahead still wait for a slot,
        claim only once half the room ahead is free (a round trip for one task would cost more than it saves)."""
        lookahead = self.lookahead(now, held)
        free = self.concurrency + lookahead - len(held)
        if lookahead:
            free = min(free, CLAIM_BATCH_PER_THREAD * self.concurrency)
        waiting = any(h.started_at is None for h in held)
        if waiting and free < max(1, lookahead // 2):
            return 0
        return free

    def stale(self, now: float, held: Mapping[str, Held]) -> list[str]:
        """Tasks claimed ahead that no slot started within CLAIM_AHEAD_MAX_WAIT_S: to hand back, but only
        while every slot is busy (a free slot takes one at once: handing it back would only lose it)."""
        if sum(1 for h in held.values() if h.started_at is not None) < self.concurrency:
            return []
        return [tid for tid, h in held.items() if h.started_at is None and now - h.claimed_at > CLAIM_AHEAD_MAX_WAIT_S]

    # ------------------------------------------------------------------ evidence
    def ran(self, seconds: float) -> None:
        """A task ran this long here."""
        self.avg_run_s = seconds if self.avg_run_s is None else 0.7 * self.avg_run_s + 0.3 * seconds

    def handed_back(self) -> None:
        """Tasks claimed ahead waited too long: they are not short after all; no claiming ahead until the
        next run times prove it."""
        self.avg_run_s = None

    # ------------------------------------------------------------------ when
    def poll_due(self, now: float) -> bool:
        return now >= self.next_poll

    def polled(self, now: float) -> None:
        self.next_poll = now + self.poll_interval_s

    def came_back_short(self, now: float, due_in: float | None) -> None:
        """A claim got fewer than it asked for: poll again at the poll interval, or earlier when a delayed
        or retried task falls due (`due_in` seconds from now, as the database said)."""
        nxt = now + self.poll_interval_s
        if due_in is not None:
            nxt = min(nxt, now + max(0.0, due_in) + 0.002)
        self.next_poll = nxt

    def claim_failed(self, now: float) -> None:
        self.next_poll = now + RETRY_AFTER_FAILED_CLAIM_S

    def poll_now(self) -> None:
        self.next_poll = 0.0

    def wait_s(self, now: float, timeout_s: float, free: int) -> float:
        """How long the consumer may sleep before it must look again. With every slot busy, only a finished
        task (which wakes it) can make a claim useful, so the poll clock is not watched then."""
        if free > 0:
            return min(timeout_s, max(0.0, self.next_poll - now))
        return timeout_s
