"""The outcome of an actor run: the stored-result cap and the rate-limit classification (issue 17)."""

from __future__ import annotations

from bgtasks.actors.errors import InvalidModelOutput, ModelError, RateLimited, RetryableModelError
from bgtasks.errors import PermanentTaskError, TaskCancelled
from bgtasks.middleware.outcome import (
    _KINDS,
    TRACEBACK_CHARS,
    ErrorKind,
    Failure,
    bounded_traceback,
    classify,
    describe,
    error_kind,
    oversized_result,
    register_error,
)


def test_a_result_over_the_cap_is_a_permanent_failure_naming_the_setting() -> None:
    assert oversized_result({"text": "x" * 900}, 1_000, "docs") is None
    failure = oversized_result({"text": "é" * 600}, 1_000, "docs")  # bytes, not characters, are capped
    assert failure is not None and failure.permanent
    assert failure.message.startswith("the result of this docs task was 1,212 bytes as JSON, over the cap of 1,000")
    assert "BGTASKS_MAX_RESULT_BYTES" in failure.message
    assert oversized_result(None, 1_000, "docs") is None


def test_rate_limits_are_told_apart_from_other_retryable_errors() -> None:
    limited = classify(RateLimited("OpenAI rate limit (429)", retry_after=2.5))
    assert limited.rate_limited and limited.retry_after_s == 2.5 and not limited.permanent
    assert classify(RateLimited("OpenAI rate limit (429)")).retry_after_s is None
    other = classify(RetryableModelError("503", retry_after=1.0))
    assert not other.rate_limited and other.retry_after_s == 1.0
    invalid = classify(InvalidModelOutput("not JSON", problems=["x"], attempts=2))
    assert invalid.permanent and invalid.message == "not JSON"


def _raised(depth: int, message: str = "at the bottom") -> BaseException:
    def down(n: int) -> None:
        if n == 0:
            raise RuntimeError(message)
        down(n - 1)

    try:
        down(depth)
    except RuntimeError as exc:
        return exc
    raise AssertionError("unreachable")


def test_a_long_traceback_keeps_its_start_and_its_end_within_the_bound() -> None:
    short = bounded_traceback(_raised(2))
    assert short.startswith("Traceback (most recent call last):") and short.endswith("RuntimeError: at the bottom")
    assert "left out" not in short
    long = bounded_traceback(_raised(3, "at the bottom " + "x" * 30_000 + " the end"))
    assert len(long) <= TRACEBACK_CHARS
    assert long.startswith("Traceback (most recent call last):") and long.endswith("x the end")
    assert "characters of the traceback left out" in long


def test_the_error_type_is_written_once() -> None:
    assert describe(classify(RuntimeError("boom"))) == "RuntimeError: boom"
    assert describe(Failure("ModelError", "the model said no")) == "ModelError: the model said no"
    assert describe(Failure("Skipped", "Skipped")) == "Skipped"


def test_errors_are_classified_by_their_registered_type_not_their_name() -> None:
    class ModelError(Exception):  # a stranger that shares an actor error's name is a plain error
        pass

    assert describe(classify(ModelError("the same name"))) == "ModelError: the same name"
    assert not classify(ModelError("x")).permanent

    class Hopeless(Exception):
        pass

    class Hinted(Hopeless):
        retry_after = 3.0

    register_error(Hopeless, ErrorKind(permanent=True, worded=True))
    try:
        assert classify(Hopeless("give up")) == Failure("Hopeless", "give up", permanent=True)
        assert classify(Hinted("still")).permanent  # a subclass takes its nearest registered class's kind
        assert error_kind(RuntimeError("x")) == ErrorKind()
    finally:
        _KINDS.pop(Hopeless)
    assert classify(Hopeless("again")) == Failure("Hopeless", "Hopeless: again")


def test_the_actors_register_their_errors() -> None:
    assert error_kind(InvalidModelOutput("bad", problems=[], attempts=1)).permanent
    assert error_kind(RateLimited("429")).rate_limited
    assert classify(ModelError("the model said no")) == Failure("ModelError", "the model said no")
    assert classify(PermanentTaskError("fix it")).permanent
    assert not classify(TaskCancelled("gone")).write
