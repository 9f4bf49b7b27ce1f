"""After an actor runs: keep its result or classify its exception (permanent or retryable, Retry-After),
so that ack and nack write the right thing. Errors are translated to words a user can act on here, once."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.middleware import TimeLimitExceeded

from ..errors import LeaseLost, PermanentTaskError, TaskCancelled
from .cancellation import TaskInterrupted


@dataclass(frozen=True)
class Failure:
    error_type: str
    message: str
    permanent: bool = False
    retry_after_s: float | None = None
    write: bool = True  # False: the task is no longer ours (cancelled, lease lost): write nothing


def classify(exc: BaseException, time_limit_s: float | None = None) -> Failure:
    name = type(exc).__name__
    text = str(exc) or name
    if isinstance(exc, (TaskInterrupted, TaskCancelled, LeaseLost)):
        return Failure(name, text, write=False)
    if isinstance(exc, TimeLimitExceeded):
        limit = f" of {time_limit_s:g}s" if time_limit_s else ""
        return Failure("TimeLimitExceeded", f"task exceeded its time limit{limit}")
    if isinstance(exc, PermanentTaskError) or getattr(exc, "permanent", False) or _is_named(exc, "PermanentModelError"):
        return Failure(name, text, permanent=True)
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, (int, float)) and math.isfinite(retry_after) and retry_after >= 0:
        return Failure(name, text, retry_after_s=float(retry_after))
    if _is_named(exc, "ModelError"):  # already worded for the user (actors/model.py); no class-name prefix
        return Failure(name, text)
    return Failure(name, f"{name}: {text}" if text != name else name)


def _is_named(exc: BaseException, name: str) -> bool:
    return any(c.__name__ == name for c in type(exc).__mro__)


def json_result(result: Any) -> Any:
    """The actor's return value as JSON for result_data (None stays NULL; non-JSON values become strings)."""
    if result is None:
        return None
    return json.loads(json.dumps(result, default=str))


class Outcome(dramatiq.Middleware):
    """Keeps the result for ack, and marks a message failed when its actor raised (we use no Retries
    middleware: retry policy is in SQL, per row)."""

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if exception is None:
            message.options["bgtasks_result"] = result
        else:
            limit = message.options.get("time_limit_s")
            message.options["bgtasks_failure"] = classify(exception, limit)
            message.fail()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        message.options["bgtasks_failure"] = Failure("Skipped", "skipped by middleware")
        message.fail()
