"""After an actor runs: keep its result or classify its exception (permanent or retryable, Retry-After),
so that ack and nack write the right thing. Errors are translated to words a user can act on here, once."""

from __future__ import annotations

import dataclasses
import json
import math
import traceback
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
    rate_limited: bool = False  # the provider said 429: reschedule without spending a retry (bounded wait)
    traceback: str | None = None  # kept with the attempt (task_attempt_errors.traceback), bounded
    # A provider budget had no room (WaitingForBudget): back in the queue until retry_after_s, no retry spent;
    # budget is its row's (provider, model).
    budget: tuple[str, str] | None = None


# task_attempt_errors.traceback holds at most this many characters (a CHECK in migration 0012).
TRACEBACK_CHARS = 16_384
_TRACEBACK_HEAD = 2_000


def bounded_traceback(exc: BaseException, limit: int = TRACEBACK_CHARS) -> str:
    """The exception's traceback as Python prints it, cut in the middle when longer than `limit`: its start
    (where the actor was called) and its end (the frames that raised and the error) are what a reader needs."""
    text = "".join(traceback.format_exception(exc)).rstrip("\n")
    if len(text) <= limit:
        return text
    tail = limit - _TRACEBACK_HEAD - 80
    cut = len(text) - _TRACEBACK_HEAD - tail
    return f"{text[:_TRACEBACK_HEAD]}\n  … {cut:,} characters of the traceback left out …\n{text[-tail:]}"


@dataclass(frozen=True)
class ErrorKind:
    """What an exception of a registered type means for its task (`register_error`)."""

    write: bool = True  # False: the task is no longer ours (cancelled, interrupted, lease lost): write nothing
    permanent: bool = False  # retrying cannot help: fail the task at once
    rate_limited: bool = False  # the provider said 429: reschedule without spending a retry (bounded wait)
    budget_wait: bool = False  # a provider budget had no room: back in the queue, no retry spent, no wait limit
    worded: bool = False  # its message is already a sentence for the user: no class-name prefix


# Exception type -> its kind; the most derived registered class of an exception decides. bgtasks' own errors
# are registered below; the actors register theirs where they define them (actors/errors.py), so this module
# imports no actor code and no class is recognised by its name.
_KINDS: dict[type[BaseException], ErrorKind] = {}


def register_error(exc_type: type[BaseException], kind: ErrorKind) -> None:
    """Classify `exc_type` and its subclasses (unless a subclass is registered itself) as `kind`."""
    _KINDS[exc_type] = kind


def error_kind(exc: BaseException) -> ErrorKind:
    """The kind of the most derived registered class of `exc`; an unregistered error is a plain retryable one."""
    for cls in type(exc).__mro__:
        if cls in _KINDS:
            return _KINDS[cls]
    return ErrorKind()


for _gone in (TaskInterrupted, TaskCancelled, LeaseLost):
    register_error(_gone, ErrorKind(write=False))
register_error(PermanentTaskError, ErrorKind(permanent=True))


def classify(exc: BaseException, time_limit_s: float | None = None) -> Failure:
    name = type(exc).__name__
    text = str(exc) or name
    kind = error_kind(exc)
    if not kind.write:
        return Failure(name, text, write=False)
    if isinstance(exc, TimeLimitExceeded):
        limit = f" of {time_limit_s:g}s" if time_limit_s else ""
        return Failure("TimeLimitExceeded", f"task exceeded its time limit{limit}")
    if kind.permanent:
        return Failure(name, text, permanent=True)
    retry_after = getattr(exc, "retry_after", None)  # the server's hint, when the error carries one
    if not (isinstance(retry_after, (int, float)) and math.isfinite(retry_after) and retry_after >= 0):
        retry_after = None
    if kind.budget_wait:
        budget = (str(getattr(exc, "provider", "")), str(getattr(exc, "model", "")))
        return Failure(name, text, retry_after_s=retry_after or 0.0, budget=budget)
    if kind.rate_limited:
        return Failure(name, text, retry_after_s=retry_after, rate_limited=True)
    if retry_after is not None:
        return Failure(name, text, retry_after_s=float(retry_after))
    if kind.worded:
        return Failure(name, text)
    return Failure(name, f"{name}: {text}" if text != name else name)


def describe(failure: Failure) -> str:
    """The error as one line with its type written once: "RuntimeError: boom", not "RuntimeError: RuntimeError:
    boom" (a message may already start with its type)."""
    if failure.message == failure.error_type or failure.message.startswith(f"{failure.error_type}: "):
        return failure.message
    return f"{failure.error_type}: {failure.message}"


def json_result(result: Any) -> Any:
    """The actor's return value as JSON for result_data (None stays NULL; non-JSON values become strings)."""
    if result is None:
        return None
    return json.loads(json.dumps(result, default=str))


def oversized_result(result: Any, max_bytes: int, task_type: str) -> Failure | None:
    """A permanent failure when ``result`` is larger than ``max_bytes`` as JSON: such a row would make every
    read of the task (lists, SSE, the dashboard) carry it."""
    if result is None:
        return None
    size = len(json.dumps(result, default=str, ensure_ascii=False).encode())
    if size <= max_bytes:
        return None
    return Failure(
        "ResultTooLarge",
        f"the result of this {task_type} task was {size:,} bytes as JSON, over the cap of {max_bytes:,} "
        "(BGTASKS_MAX_RESULT_BYTES); it was not stored",
        permanent=True,
    )


# Exceptions that end an actor on an expected path: the task is no longer ours (cancelled, interrupted,
# fenced off: its lease lost) or failed on purpose. Declared as each actor's `throws`, Dramatiq logs them
# without a traceback; the worker logs the one line that says what happened (service/worker/outcomes.py).
EXPECTED: tuple[type[BaseException], ...] = (TaskInterrupted, TaskCancelled, LeaseLost, PermanentTaskError)


class _OnLoop:
    def __repr__(self) -> str:
        return "ON_LOOP"


# What an async actor's Dramatiq function returns: its coroutine was started on the event loop
# (service/worker/async_tasks.py), which hands the real outcome on when it ends; ack writes nothing for it.
ON_LOOP: Any = _OnLoop()


def outcome_of(result: Any, exception: BaseException | None, *, max_result_bytes: int, task_type: str,
               time_limit_s: float | None = None) -> tuple[Any, Failure | None]:
    """An actor's end as (result, None) or (None, the failure to write): its exception classified, with the
    traceback kept when the failure is written, or its result refused when over the size cap."""
    if exception is None:
        too_large = oversized_result(result, max_result_bytes, task_type)
        return (None, too_large) if too_large is not None else (result, None)
    failure = classify(exception, time_limit_s)
    if failure.write and failure.budget is None:  # a budget wait is no error: no traceback
        failure = dataclasses.replace(failure, traceback=bounded_traceback(exception))
    return None, failure


class Outcome(dramatiq.Middleware):
    """Keeps the result for ack, and marks a message failed when its actor raised or its result is over the
    size cap (we use no Retries middleware: retry policy is in SQL, per row)."""

    def __init__(self, max_result_bytes: int = 1_000_000) -> None:
        self.max_result_bytes = max_result_bytes

    @property
    def actor_options(self) -> set[str]:
        return {"throws"}  # Dramatiq's worker reads it: exceptions logged without a traceback (EXPECTED)

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if result is ON_LOOP:
            message.options["bgtasks_result"] = ON_LOOP  # ack leaves it: the loop hands its outcome on
            return
        result, failure = outcome_of(result, exception, max_result_bytes=self.max_result_bytes,
                                     task_type=message.actor_name, time_limit_s=message.options.get("time_limit_s"))
        if failure is None:
            message.options["bgtasks_result"] = result
        else:
            message.options["bgtasks_failure"] = failure
            message.fail()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        message.options["bgtasks_failure"] = Failure("Skipped", "skipped by middleware")
        message.fail()
