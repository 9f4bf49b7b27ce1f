"""The one backoff policy (service/backoff.py): doubling from base to the cap, reset, jitter from an injected
random source. No sleeping: the helper only says how long."""

from __future__ import annotations

from bgtasks.backoff import Backoff, backoff_delay


def test_delays_double_from_base_and_stop_at_the_cap() -> None:
    assert [backoff_delay(n, 0.1, 2.0) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert backoff_delay(10_000, 0.1, 2.0) == 2.0  # no overflow however long the outage
    assert backoff_delay(-1, 0.1, 2.0) == 0.1


def test_failures_in_a_row_grow_the_wait_and_a_success_resets_it() -> None:
    b = Backoff(base=0.1, cap=0.5)
    assert [b.next() for _ in range(4)] == [0.1, 0.2, 0.4, 0.5]
    assert b.failures == 4
    b.reset()
    assert b.next() == 0.1


def test_jitter_takes_off_at_most_its_fraction_through_the_given_random_source() -> None:
    asked: list[tuple[float, float]] = []

    def lowest(a: float, b: float) -> float:
        asked.append((a, b))
        return a

    b = Backoff(base=1.0, cap=10.0, jitter=0.5, uniform=lowest)
    assert [b.next() for _ in range(3)] == [0.5, 1.0, 2.0]
    assert asked == [(0.5, 1.0)] * 3
    assert Backoff(base=1.0, cap=10.0, jitter=0.5, uniform=lambda a, b: b).next() == 1.0
