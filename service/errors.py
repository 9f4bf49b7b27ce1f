"""The error tree of bgtasks; the HTTP edge translates it to status codes in one table (api/errors.py).

BgtasksError
 +-- ConfigError            settings that cannot work (names the variable)
 +-- SchemaOutdated         database behind the code: run `bgtasks migrate`
 +-- NotFound / TaskNotFound  unknown id, or not visible to the caller
 +-- IllegalTransition      a state change the state machine refuses (HTTP 409)
 +-- ValidationFailed       bad input, names the field (HTTP 400/422)
 +-- AuthError / Forbidden  no or bad credentials (401) / not allowed (403)
 +-- RateLimited            creation rate over a per-user limit (429, Retry-After)
 +-- LimitReached           a per-user count limit reached, e.g. schedules (409)
 +-- PermanentTaskError     raised by an actor: fail the task now, no retries
"""

from __future__ import annotations


class BgtasksError(Exception):
    """Base of every error bgtasks raises on purpose."""


class ConfigError(BgtasksError):
    pass


class SchemaOutdated(BgtasksError):
    pass


class NotFound(BgtasksError):
    pass


class TaskNotFound(NotFound):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")
        self.task_id = task_id


class IllegalTransition(BgtasksError):
    def __init__(self, task_id: str, current: str, target: str, why: str = "") -> None:
        msg = f"task {task_id!r} is {current}; it cannot become {target}"
        super().__init__(f"{msg}: {why}" if why else msg)
        self.task_id, self.current, self.target = task_id, current, target


class ValidationFailed(BgtasksError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AuthError(BgtasksError):
    pass


class Forbidden(BgtasksError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RateLimited(BgtasksError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LimitReached(BgtasksError):
    """A per-user count limit (user_limits, e.g. max_schedules) is reached: waiting does not help, removing
    something or a raised limit does."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class PermanentTaskError(BgtasksError):
    """Raise from an actor to fail the task at once: retrying cannot help (bad input, no API key)."""


class SpendingCapReached(PermanentTaskError):
    """The task's owner reached their daily spending cap on model calls (user_limits.max_cost_usd_per_day)."""


class TaskCancelled(BgtasksError):
    """The task was cancelled (API, psql or a failed dependency) while its actor ran."""


class LeaseLost(BgtasksError):
    """This worker no longer owns the task (lease expired and another took it, or it was deleted)."""
