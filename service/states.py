"""Task statuses and legal transitions (pure). The SQL function task_transition_allowed() is the same table;
tests/integration/test_schema.py checks that the two agree."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.COMPLETED, Status.ERROR, Status.CANCELLED})
ACTIVE = frozenset({Status.PENDING, Status.PROCESSING})

TRANSITIONS: frozenset[tuple[Status, Status]] = frozenset(
    {
        (Status.PENDING, Status.PROCESSING),
        (Status.PENDING, Status.COMPLETED),
        (Status.PENDING, Status.ERROR),
        (Status.PENDING, Status.CANCELLED),
        (Status.PROCESSING, Status.PENDING),
        (Status.PROCESSING, Status.COMPLETED),
        (Status.PROCESSING, Status.ERROR),
        (Status.PROCESSING, Status.CANCELLED),
        (Status.ERROR, Status.PENDING),
        (Status.CANCELLED, Status.PENDING),
    }
)

# Seed two says "failed" where seed one (and our table) say "error". Inputs accept both; seed-two endpoints
# show "failed".
ALIASES = {"failed": Status.ERROR}


def parse_status(value: str) -> Status:
    """A status from user input, accepting seed two's alias; ValueError names the allowed values."""
    v = value.strip().lower()
    if v in ALIASES:
        return ALIASES[v]
    try:
        return Status(v)
    except ValueError:
        allowed = ", ".join([*(s.value for s in Status), *ALIASES])
        raise ValueError(f"unknown status {value!r}; one of: {allowed}") from None


def seed_two_status(status: str) -> str:
    """How seed two's endpoints show a status."""
    return "failed" if status == Status.ERROR else status


def allowed(current: Status, target: Status) -> bool:
    return current == target or (current, target) in TRANSITIONS


def why_not(current: Status, target: Status) -> str:
    if current == Status.COMPLETED:
        return "completed is final"
    if current in (Status.ERROR, Status.CANCELLED):
        return f"a task in {current} can only go back to pending (retry)"
    return f"{current} cannot become {target}"
