"""The claim policy without processes: how many to claim, when claiming ahead starts and stops, which tasks
claimed ahead go back, when to poll; every decision at a `now` the test chooses."""

from __future__ import annotations

from dataclasses import dataclass

from bgtasks.worker.claim_policy import (
    CLAIM_AHEAD_MAX_WAIT_S,
    CLAIM_AHEAD_PER_THREAD,
    CLAIM_BATCH_PER_THREAD,
    ClaimPolicy,
)


@dataclass
class Task:
    claimed_at: float
    started_at: float | None = None


def test_without_evidence_of_short_tasks_only_the_free_slots_are_claimed() -> None:
    policy = ClaimPolicy(concurrency=4, claim_ahead_s=0.05)
    assert policy.claim_size(10.0, []) == 4
    assert policy.claim_size(10.0, [Task(9.9, 9.95)]) == 3
    assert policy.claim_size(10.0, [Task(9.9, 9.95)] * 4) == 0


def test_short_tasks_are_claimed_ahead_in_batches_and_long_ones_stop_it() -> None:
    policy = ClaimPolicy(concurrency=4, claim_ahead_s=0.05)
    policy.ran(0.001)
    assert policy.lookahead(10.0, []) == CLAIM_AHEAD_PER_THREAD * 4
    assert policy.claim_size(10.0, []) == CLAIM_BATCH_PER_THREAD * 4  # one batch runs while the next comes
    running_long = Task(9.0, 10.0 - CLAIM_AHEAD_MAX_WAIT_S - 0.01)
    assert policy.lookahead(10.0, [running_long]) == 0  # what would wait behind it could wait long
    assert policy.claim_size(10.0, [running_long]) == 3
    policy.ran(1.0)
    policy.ran(1.0)
    assert policy.lookahead(10.0, []) == 0  # the average is no longer short


def test_off_when_claim_ahead_is_zero() -> None:
    policy = ClaimPolicy(concurrency=2, claim_ahead_s=0.0)
    policy.ran(0.0001)
    assert policy.lookahead(1.0, []) == 0 and policy.claim_size(1.0, []) == 2


def test_while_tasks_claimed_ahead_wait_it_claims_only_once_half_the_room_ahead_is_free() -> None:
    policy = ClaimPolicy(concurrency=2, claim_ahead_s=0.05)
    policy.ran(0.001)  # lookahead 6: 8 places
    started = [Task(10.0, 10.0)] * 2
    assert policy.claim_size(10.0, [*started, *[Task(10.0)] * 4]) == 0  # 2 free < 3
    assert policy.claim_size(10.0, [*started, *[Task(10.0)] * 3]) == 3


def test_tasks_claimed_ahead_that_wait_too_long_are_stale_and_end_claiming_ahead() -> None:
    policy = ClaimPolicy(concurrency=1, claim_ahead_s=0.05)
    policy.ran(0.001)
    held = {"a": Task(10.0), "b": Task(10.0, 10.1), "c": Task(10.15)}
    assert policy.stale(10.0 + CLAIM_AHEAD_MAX_WAIT_S + 0.01, held) == ["a"]
    assert policy.stale(10.0 + CLAIM_AHEAD_MAX_WAIT_S - 0.01, held) == []
    del held["b"]  # its slot is free: a waiting task is about to start, not to be handed back
    assert policy.stale(10.0 + CLAIM_AHEAD_MAX_WAIT_S + 0.01, held) == []
    policy.handed_back()
    assert policy.lookahead(11.0, []) == 0


def test_polling_follows_the_interval_and_a_task_falling_due_earlier() -> None:
    policy = ClaimPolicy(concurrency=1, claim_ahead_s=0.0, poll_interval_s=5.0)
    assert policy.poll_due(0.0)  # at start
    policy.polled(100.0)
    assert not policy.poll_due(104.9) and policy.poll_due(105.0)
    policy.came_back_short(100.0, due_in=1.0)  # a retry falls due in a second
    assert policy.next_poll == 101.002
    policy.came_back_short(100.0, due_in=None)
    assert policy.next_poll == 105.0
    assert policy.wait_s(100.0, 0.1, free=1) == 0.1
    assert abs(policy.wait_s(104.95, 0.1, free=1) - 0.05) < 1e-9
    assert policy.wait_s(104.95, 0.1, free=0) == 0.1  # every slot busy: only a finish can help
    policy.claim_failed(100.0)
    assert policy.next_poll == 100.5
    policy.poll_now()
    assert policy.poll_due(0.0)
