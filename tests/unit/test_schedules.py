"""Cron schedules and their catch-up policy, with the clock given (no database, no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bgtasks.errors import ValidationFailed
from bgtasks.schedules import check_cron, latest_due, next_due, plan_tick

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
EVERY_SECOND = "* * * * * *"
EVERY_MINUTE = "* * * * *"


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_six_fields_read_seconds_first() -> None:
    assert next_due("*/15 * * * * *", "UTC", s(1)) == s(15)
    assert next_due("30 0 * * * *", "UTC", T0) == s(30)  # second 30 of minute 0 of every hour


def test_five_fields_are_minutes() -> None:
    assert next_due("*/5 * * * *", "UTC", s(1)) == s(300)
    assert latest_due("*/5 * * * *", "UTC", s(299)) == T0
    assert latest_due("*/5 * * * *", "UTC", s(300)) == s(300)


def test_time_zone_is_the_schedules_own() -> None:
    # 09:00 in Madrid is 08:00 UTC in winter (CET, +1) and 07:00 UTC in summer (CEST, +2).
    assert next_due("0 9 * * *", "Europe/Madrid", T0) == datetime(2025, 3, 2, 8, 0, tzinfo=UTC)
    assert next_due("0 9 * * *", "Europe/Madrid", datetime(2025, 6, 1, tzinfo=UTC)) == datetime(
        2025, 6, 1, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("expr", ["", "* * *", "61 * * * *", "* * * * * * * *", "every day"])
def test_bad_cron_is_refused_naming_the_field(expr: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        check_cron(expr)
    assert err.value.field == "cron"


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 31 2,4,6,9,11 *"])
def test_cron_that_is_never_due_is_refused(expr: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        check_cron(expr)
    assert err.value.field == "cron" and "never due" in str(err.value)


def test_cron_due_only_in_leap_years_is_accepted() -> None:
    assert next_due("0 0 29 2 *", "UTC", T0) == datetime(2028, 2, 29, tzinfo=UTC)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationFailed) as err:
        next_due(EVERY_MINUTE, "Mars/Olympus", T0)
    assert err.value.field == "timezone"


def test_new_schedule_starts_at_the_next_due_time_without_a_task() -> None:
    plan = plan_tick(EVERY_MINUTE, "UTC", "skip", None, s(10))
    assert plan.create == [] and plan.next_run_at == s(60)


def test_not_yet_due_changes_nothing() -> None:
    plan = plan_tick(EVERY_MINUTE, "UTC", "skip", s(60), s(59.5))
    assert plan.create == [] and plan.next_run_at == s(60)


def test_on_time_due_time_gets_one_task_and_advances() -> None:
    plan = plan_tick(EVERY_SECOND, "UTC", "skip", s(5), s(5.3))
    assert plan.create == [s(5)] and plan.next_run_at == s(6)


def test_a_short_hiccup_within_the_grace_leaves_no_gap() -> None:
    plan = plan_tick(EVERY_SECOND, "UTC", "skip", s(5), s(8.2), grace_s=10)
    assert plan.create == [s(5), s(6), s(7), s(8)] and plan.next_run_at == s(9)


def test_skip_drops_missed_due_times_instead_of_a_burst() -> None:
    # Down for a day, a per-minute schedule: nothing for the missed minutes.
    plan = plan_tick(EVERY_MINUTE, "UTC", "skip", s(60), s(86400 + 30), grace_s=10)
    assert plan.create == [] and plan.next_run_at == s(86400 + 60)


def test_skip_keeps_the_due_times_still_within_the_grace() -> None:
    plan = plan_tick(EVERY_SECOND, "UTC", "skip", s(1), s(100.5), grace_s=2)
    assert plan.create == [s(99), s(100)] and plan.next_run_at == s(101)


def test_once_creates_one_task_for_the_latest_missed_due_time() -> None:
    plan = plan_tick(EVERY_MINUTE, "UTC", "once", s(60), s(86400 + 30), grace_s=10)
    assert plan.create == [s(86400)] and plan.next_run_at == s(86400 + 60)


def test_once_adds_nothing_when_an_on_time_task_stands_for_the_missed_ones() -> None:
    plan = plan_tick(EVERY_MINUTE, "UTC", "once", s(60), s(86400 + 5), grace_s=10)
    assert plan.create == [s(86400)] and plan.next_run_at == s(86400 + 60)


def test_ticks_over_a_window_create_each_due_time_once() -> None:
    """Simulated ticks every 0.5 s with jitter: every due time in the window exactly once, in order."""
    nxt = plan_tick(EVERY_SECOND, "UTC", "skip", None, s(0)).next_run_at
    created: list[datetime] = []
    t = 0.0
    while t < 30:
        t += 0.5 if int(t * 10) % 7 else 1.7  # now and then a slow tick
        plan = plan_tick(EVERY_SECOND, "UTC", "skip", nxt, s(t))
        created += plan.create
        nxt = plan.next_run_at
    assert created == [s(i) for i in range(1, int(t) + 1)]
