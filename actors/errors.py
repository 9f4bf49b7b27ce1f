"""Errors the actors raise, typed by what the broker should do about them.

    ModelError                      anything that went wrong talking to the model
     ├── PermanentModelError        retrying cannot help: no key, bad key, no access, bad request, unknown model,
     │    │                         an answer cut off at the type's largest output limit, or over the size cap
     │    └── InvalidModelOutput    the model answered, but not with JSON matching the schema, even after re-asks
     └── RetryableModelError        may work later; ``retry_after`` is the server's hint in seconds, if any
          ├── RateLimited           the provider said 429: wait and run again without counting a retry
          └── WaitingForBudget      a provider budget (provider_budgets) had no room: no call was made; the task
                                    waits in the queue for its turn without counting a retry

    ProjectPathError (ValueError)   a task's project path is missing, not a directory, or outside the roots

``InvalidModelOutput`` is permanent: ``complete_json`` already showed the model its mistake within the run,
and re-running the same prompt with nothing changed repeats the same paid calls (issue 17 counted eight).
``RateLimited`` does not spend ``max_retries``: the worker reschedules the task after ``retry_after`` (or its
own backoff) until the task has waited ``BGTASKS_RATE_LIMIT_MAX_WAIT_S`` in all, then 429s count as failures.

Each is registered with the worker's error classification (``register_error``, service/middleware/outcome.py)
below its definition: that registry, not a class name, tells the broker what the error means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bgtasks.middleware.outcome import ErrorKind, register_error

if TYPE_CHECKING:
    from bgtasks.actors.model import ModelUsage

__all__ = [
    "InvalidModelOutput",
    "ModelError",
    "PermanentModelError",
    "ProjectPathError",
    "RateLimited",
    "RetryableModelError",
    "WaitingForBudget",
]


class ModelError(Exception):
    """Base of every model failure. ``str(error)`` is the sentence shown to the user as ``error_message``.

    ``usage`` holds the token usage of the calls made before the failure (failed calls cost tokens too), so the
    caller can store it with the task whatever the outcome.
    """

    def __init__(self, message: str, *, usage: list[ModelUsage] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage: list[ModelUsage] = list(usage or [])


class PermanentModelError(ModelError):
    """Retrying the same request cannot succeed; fail the task at once without burning retries."""


class RetryableModelError(ModelError):
    """A transient failure: rate limit, server error, timeout, lost connection.

    ``retry_after`` is the delay in seconds the server asked for (``Retry-After``/``retry-after-ms``), or None
    when it gave no hint and the broker's own backoff applies.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, usage: list[ModelUsage] | None = None
    ) -> None:
        super().__init__(message, usage=usage)
        self.retry_after = retry_after


class RateLimited(RetryableModelError):
    """The provider rate-limited the call (429 other than out of quota). Waiting helps; the task is
    rescheduled without spending a retry (registered as ``rate_limited``)."""


class WaitingForBudget(RetryableModelError):
    """The fleet's budget for this provider and model (provider_budgets) has no room for the next call, so it was
    not made. ``retry_after`` is when this task's turn is expected; the worker puts the task back in the queue
    until then (postpone_for_budget(), no retry spent, no wait limit: the budget paces the
    fleet, it is not a failure). ``provider`` and ``model`` name the budget's row."""

    def __init__(self, message: str, *, provider: str, model: str, retry_after: float,
                 usage: list[ModelUsage] | None = None) -> None:
        super().__init__(message, retry_after=retry_after, usage=usage)
        self.provider = provider
        self.model = model


class InvalidModelOutput(PermanentModelError):
    """The model's answer was not valid JSON for the schema after every re-ask within one run.

    ``problems`` lists what was wrong with the last answer (e.g. ``questions[2].options: expected array, got
    string``); ``attempts`` is how many answers were tried.
    """

    def __init__(
        self,
        message: str,
        *,
        problems: list[str],
        attempts: int,
        usage: list[ModelUsage] | None = None,
    ) -> None:
        super().__init__(message, usage=usage)
        self.problems = problems
        self.attempts = attempts


# Model errors are worded for the user (no class-name prefix in error_message).
register_error(ModelError, ErrorKind(worded=True))
register_error(PermanentModelError, ErrorKind(permanent=True, worded=True))
register_error(RateLimited, ErrorKind(rate_limited=True, worded=True))
register_error(WaitingForBudget, ErrorKind(budget_wait=True, worded=True))


class ProjectPathError(ValueError):
    """A project path a task names cannot be read: it does not exist, is not a directory, or escapes the roots."""
