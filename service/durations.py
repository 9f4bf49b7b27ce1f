"""Durations and times as people type them on the command line: `7d`, `1h30m`, `+2h`, or an ISO 8601 time
(pure; `bgtasks cleanup --older-than`, `bgtasks submit --run-at`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"(?:{_NUMBER}[smhdw])+")


def seconds(text: str, bare_unit: str | None = None) -> float | None:
    """'7d' -> 604800.0; parts add up ('1h30m'); units s, m, h, d, w. A bare number is in `bare_unit`
    (None: refused). None when `text` is not a duration."""
    text = text.strip().lower().replace(" ", "")
    if bare_unit and re.fullmatch(_NUMBER, text):
        return float(text) * UNITS[bare_unit]
    if not _DURATION.fullmatch(text):
        return None
    return sum(float(n) * UNITS[u] for n, u in re.findall(rf"({_NUMBER})([smhdw])", text))


def point_in_time(text: str, now: datetime) -> datetime | None:
    """`+DURATION` (from `now`: '+2h', '+1d12h', '+90s') or an ISO 8601 time ('2026-01-05T12:00:00+01:00';
    without an offset it is UTC, as in the API). None when `text` is neither."""
    text = text.strip()
    if text.startswith("+"):
        delta = seconds(text[1:])
        return None if delta is None else now + timedelta(seconds=delta)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
