"""Cron schedules, pure: parse an expression in a time zone, and plan one scheduler tick (which due times get
a task, when the schedule is due next) from the time now, given by the caller (the database's clock).

Catch-up, after the scheduler was not running (every worker down, a long pause):
- a due time at most MISFIRE_GRACE_S old is on time: it gets its task, so a short hiccup leaves no gap;
- older due times were missed. `skip` drops them; `once` creates one task, for the latest missed due time,
  unless an on-time task is created in the same tick (it stands for the missed runs). Never a burst.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from .errors import ValidationFailed

MISFIRE_GRACE_S = 10.0
CATCH_UP = ("skip", "once")
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # a leap year: 29 February is due
_MAX_ON_TIME = 1000  # due times created in one tick at most (a per-second cron within the grace: ~11)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed("timezone", f"unknown time zone {name!r} (an IANA name like Europe/Madrid)") from exc


def check_cron(expr: str) -> str:
    """The expression, normalised; 5 fields (minute first) or 6 (seconds first). ValidationFailed if not cron."""
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValidationFailed("cron", f"expected 5 fields (m h dom mon dow) or 6 (seconds first), got {expr!r}")
    norm = " ".join(fields)
    if not croniter.is_valid(norm, second_at_beginning=len(fields) == 6):
        raise ValidationFailed("cron", f"not a valid cron expression: {expr!r}")
    try:  # valid field by field yet never due (30 February): croniter would raise on every tick
        croniter(norm, _EPOCH, second_at_beginning=len(fields) == 6).get_next(datetime)
    except CroniterBadDateError:
        raise ValidationFailed("cron", f"{expr!r} is never due (no such date, like 30 February)") from None
    return norm


def _iter(expr: str, tz: str, start: datetime) -> croniter:
    expr = check_cron(expr)
    return croniter(expr, start.astimezone(zone(tz)), second_at_beginning=len(expr.split()) == 6)


def next_due(expr: str, tz: str, after: datetime) -> datetime:
    """The first due time strictly after `after` (timezone-aware)."""
    return _iter(expr, tz, after).get_next(datetime)  # type: ignore[no-any-return]


def latest_due(expr: str, tz: str, at_or_before: datetime) -> datetime:
    """The last due time at or before `at_or_before`."""
    return _iter(expr, tz, at_or_before + timedelta(microseconds=1)).get_prev(datetime)  # type: ignore[no-any-return]


PERIOD_SAMPLES = 400  # consecutive due times looked at for the shortest gap (cron repeats within a day or so)


def shortest_period_s(expr: str, tz: str, start: datetime, at_least: float | None = None) -> float:
    """The shortest gap in seconds between consecutive due times from `start` on, over PERIOD_SAMPLES of
    them; stops early at a gap under `at_least` (that already answers the caller). Cron fields are sets
    repeated every minute, hour, day, so the densest stretch shows among the first due times; a stretch
    that only a rare day-of-month and day-of-week combination reaches could hide past the sample."""
    it = _iter(expr, tz, start)
    prev = it.get_next(datetime)
    shortest = float("inf")
    for _ in range(PERIOD_SAMPLES):
        due = it.get_next(datetime)
        shortest = min(shortest, (due - prev).total_seconds())
        if at_least is not None and shortest < at_least:
            break
        prev = due
    return shortest


def check_period(expr: str, tz: str, start: datetime, minimum_s: int | None) -> None:
    """ValidationFailed (field cron) when the schedule would run more often than every `minimum_s` seconds."""
    if minimum_s is None:
        return
    gap = shortest_period_s(expr, tz, start, at_least=minimum_s)
    if gap < minimum_s:
        raise ValidationFailed(
            "cron", f"{expr!r} runs every {gap:g} s at times; the shortest period allowed is {minimum_s} s "
            "(user_limits.min_schedule_period_s)")


@dataclass(frozen=True)
class Plan:
    create: list[datetime]  # due times to create a task for, oldest first
    next_run_at: datetime  # the next due time after now


def plan_tick(expr: str, tz: str, catch_up: str, next_run_at: datetime | None, now: datetime,
              grace_s: float = MISFIRE_GRACE_S) -> Plan:
    """What one tick does for a schedule. `next_run_at` None: new or changed schedule, start from now."""
    if next_run_at is None or next_run_at > now:
        return Plan([], next_due(expr, tz, now) if next_run_at is None else next_run_at)
    cutoff = now - timedelta(seconds=grace_s)
    on_time: list[datetime] = []
    due = next_run_at if next_run_at >= cutoff else next_due(expr, tz, cutoff)
    while due <= now and len(on_time) < _MAX_ON_TIME:
        on_time.append(due)
        due = next_due(expr, tz, due)
    create = on_time
    if next_run_at < cutoff and catch_up == "once" and not on_time:
        create = [latest_due(expr, tz, cutoff)]
    return Plan(create, next_due(expr, tz, max(now, on_time[-1]) if on_time else now))
