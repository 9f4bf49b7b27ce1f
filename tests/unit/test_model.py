"""actors.model against a real OpenAI-compatible HTTP server (tests/fakes): answers, re-asks, error
classification and cancellation, through the real openai client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bgtasks.actors.errors import (
    InvalidModelOutput,
    ModelError,
    PermanentModelError,
    RateLimited,
    RetryableModelError,
)
from bgtasks.actors.model import ModelConfig, complete_json, schema_problems
from tests.fakes.openai_server import (
    FakeOpenAI,
    answer,
    malformed,
    rate_limited,
    server_error,
    stall,
    status,
    trickle,
    unauthorized,
    wrong_schema,
)

QUIZ: dict[str, Any] = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "minItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "question": {"type": "string"},
                    "options": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
                    "answer": {"type": "integer", "minimum": 0, "maximum": 3},
                    "difficulty": {"type": "string", "enum": ["easy", "medium", "hard"]},
                },
                "required": ["question", "options", "answer", "difficulty"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["questions"],
    "additionalProperties": False,
}


def _question(options: Any = None) -> dict[str, Any]:
    return {"question": "2+2?", "options": options or ["3", "4"], "answer": 1, "difficulty": "easy"}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    return fake_server.reset()


def _config(fake: FakeOpenAI, **overrides: Any) -> ModelConfig:
    values: dict[str, Any] = {
        "api_key": "sk-test",
        "base_url": fake.base_url,
        "model": "gpt-test",
        "timeout_s": 10.0,
        "max_model_retries": 3,
    }
    values.update(overrides)
    return ModelConfig(**values)


async def _in_flight(fake: FakeOpenAI, n: int) -> None:
    """Wait (polling, up to 10 s) until the fake has received `n` requests."""
    for _ in range(1000):
        if len(fake.requests) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the fake received {len(fake.requests)} requests, not {n}, within 10 s")


async def _ask(config: ModelConfig, **kwargs: Any) -> tuple[dict[str, Any], list[Any]]:
    return await complete_json(
        config, system="You write quizzes.", user="Three questions on arithmetic.", schema_name="quiz_questions",
        schema=QUIZ, **kwargs,
    )  # fmt: skip


async def test_valid_answer_is_returned_with_usage_and_the_request_asks_for_strict_json(
    fake: FakeOpenAI,
) -> None:
    result, usage = await _ask(_config(fake))

    assert schema_problems(result, QUIZ) == []
    assert len(result["questions"]) == 3
    assert len(usage) == 1
    assert usage[0].model == "gpt-test"
    assert usage[0].prompt_tokens > 0 and usage[0].completion_tokens > 0
    assert usage[0].total_tokens == usage[0].prompt_tokens + usage[0].completion_tokens
    assert usage[0].duration_ms >= 0
    [request] = fake.requests
    assert request.model == "gpt-test"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert request.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "quiz_questions", "schema": QUIZ, "strict": True},
    }


async def test_scripted_answer_is_returned_as_sent(fake: FakeOpenAI) -> None:
    fake.script(answer({"questions": [_question(), _question(), _question()]}))
    result, _ = await _ask(_config(fake))
    assert result == {"questions": [_question(), _question(), _question()]}


async def test_rate_limit_is_retryable_with_the_servers_retry_after(fake: FakeOpenAI) -> None:
    fake.script(rate_limited(retry_after=3))
    with pytest.raises(RateLimited) as caught:
        await _ask(_config(fake))
    assert caught.value.retry_after == 3.0
    assert str(caught.value) == f"OpenAI rate limit (429) at {fake.base_url}; retry after 3s"
    assert len(fake.requests) == 1, "the openai client must not retry on its own"


async def test_rate_limit_without_retry_after_leaves_the_delay_to_the_broker(fake: FakeOpenAI) -> None:
    fake.script(rate_limited(retry_after=None))
    with pytest.raises(RetryableModelError) as caught:
        await _ask(_config(fake))
    assert caught.value.retry_after is None


async def test_exhausted_quota_fails_permanently(fake: FakeOpenAI) -> None:
    fake.script(rate_limited(retry_after=None, code="insufficient_quota"))
    with pytest.raises(PermanentModelError, match="quota exhausted"):
        await _ask(_config(fake))


async def test_server_error_is_retryable_and_names_the_endpoint(fake: FakeOpenAI) -> None:
    fake.script(server_error(500))
    with pytest.raises(RetryableModelError) as caught:
        await _ask(_config(fake))
    assert not isinstance(caught.value, InvalidModelOutput)
    assert str(caught.value).startswith(f"model endpoint {fake.base_url} returned 500 Internal Server Error")
    assert len(fake.requests) == 1


async def test_unavailable_with_retry_after_carries_the_hint(fake: FakeOpenAI) -> None:
    fake.script(status(503, "overloaded", headers={"Retry-After": "1.5"}))
    with pytest.raises(RetryableModelError) as caught:
        await _ask(_config(fake))
    assert caught.value.retry_after == 1.5


async def test_bad_key_fails_permanently_with_advice(fake: FakeOpenAI) -> None:
    fake.script(unauthorized())
    with pytest.raises(PermanentModelError) as caught:
        await _ask(_config(fake))
    assert str(caught.value).startswith("authentication failed for provider openai: check OPENAI_API_KEY")


@pytest.mark.parametrize("code", [400, 403, 404, 422])
async def test_client_errors_fail_permanently(fake: FakeOpenAI, code: int) -> None:
    fake.script(status(code, "nope"))
    with pytest.raises(PermanentModelError, match="nope"):
        await _ask(_config(fake))


@pytest.mark.parametrize("key", [None, "", "   "])
async def test_missing_key_fails_before_any_request(fake: FakeOpenAI, key: str | None) -> None:
    with pytest.raises(PermanentModelError) as caught:
        await _ask(_config(fake, api_key=key))
    assert str(caught.value) == "API key not configured for provider: openai"
    assert fake.requests == []


async def test_malformed_json_is_reasked_and_the_second_answer_wins(fake: FakeOpenAI) -> None:
    fake.script(malformed())
    result, usage = await _ask(_config(fake))

    assert schema_problems(result, QUIZ) == []
    assert len(usage) == 2, "both calls cost tokens"
    second = fake.requests[1]
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2]["content"] == '{"questions": [{"question": "unterminated'
    assert "not valid JSON" in second.messages[3]["content"]


async def test_schema_violation_is_reasked_with_the_problem(fake: FakeOpenAI) -> None:
    fake.script(wrong_schema({"questions": [_question(), _question(), {**_question(), "answer": "one"}]}))
    result, usage = await _ask(_config(fake))
    assert schema_problems(result, QUIZ) == []
    assert "questions[2].answer: expected integer, got string" in fake.requests[1].messages[3]["content"]
    assert len(usage) == 2


async def test_always_wrong_output_raises_an_error_naming_the_path(fake: FakeOpenAI) -> None:
    fake.always(wrong_schema({"questions": [_question(), _question(), {**_question(), "options": "3, 4"}]}))
    with pytest.raises(InvalidModelOutput) as caught:
        await _ask(_config(fake), validate_attempts=3)

    error = caught.value
    assert str(error) == (
        "model output did not match schema 'quiz_questions': questions[2].options: expected array, got string"
    )
    assert isinstance(error, PermanentModelError), "re-running the same prompt would repeat the same calls"
    assert error.attempts == 3 and len(fake.requests) == 3
    assert len(error.usage) == 3


async def test_always_malformed_output_says_it_was_not_json(fake: FakeOpenAI) -> None:
    fake.always(malformed())
    with pytest.raises(
        InvalidModelOutput, match=r"^model output for schema 'quiz_questions' was not usable JSON"
    ):
        await _ask(_config(fake))


async def test_truncated_answer_is_retried_once_with_a_larger_limit_then_fails_permanently(
    fake: FakeOpenAI,
) -> None:
    fake.always(answer('{"questions": [', finish_reason="length"))
    with pytest.raises(PermanentModelError, match="cut off at the output limit of 2000 tokens"):
        await _ask(_config(fake, max_output_tokens=1000, max_output_tokens_cap=2000), validate_attempts=1)
    assert [r.body["max_completion_tokens"] for r in fake.requests] == [1000, 2000]


async def test_an_answer_over_the_size_cap_fails_with_a_clear_message(fake: FakeOpenAI) -> None:
    fake.always(answer("x" * 5_000_000))
    with pytest.raises(PermanentModelError, match="over the cap of 1,000,000"):
        await _ask(_config(fake))


async def test_usage_is_kept_when_a_reask_fails(fake: FakeOpenAI) -> None:
    fake.script(malformed(), server_error(502))
    with pytest.raises(RetryableModelError) as caught:
        await _ask(_config(fake))
    assert len(caught.value.usage) == 1


async def test_slow_endpoint_times_out_as_retryable(fake: FakeOpenAI) -> None:
    fake.script(stall(60))  # ends when the fake stops; only the client's deadline can end the call sooner
    with pytest.raises(RetryableModelError, match=r"did not answer within 0\.5s"):
        await _ask(_config(fake, timeout_s=0.5))
    assert len(fake.requests) == 1, "one call, given up at its deadline, not retried by the openai client"


async def test_a_trickling_server_cannot_hold_a_call_past_its_total_deadline(fake: FakeOpenAI) -> None:
    # 20 bytes every 0.2 s for ten minutes: every chunk resets the client's read timeout, never the deadline.
    fake.script(trickle(0.2, b" " * 20))
    with pytest.raises(RetryableModelError) as caught:
        await _ask(_config(fake, timeout_s=1.0))
    assert str(caught.value) == (
        f"model endpoint {fake.base_url} did not answer within 1s (BGTASKS_MODEL_TIMEOUT_S, the total time of "
        "one call)")
    assert len(fake.requests) == 1


async def test_unreachable_endpoint_is_retryable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ModelConfig("sk-test", f"http://127.0.0.1:{port}/v1", "gpt-test", 5.0, 3)
    with pytest.raises(
        RetryableModelError, match=rf"^could not reach model endpoint http://127.0.0.1:{port}/v1"
    ):
        await _ask(config)


async def test_cancelling_a_stalled_call_ends_it_promptly(fake: FakeOpenAI) -> None:
    fake.script(stall(30))
    call = asyncio.create_task(_ask(_config(fake, timeout_s=60)))
    await _in_flight(fake, 1)

    call.cancel()
    # The stall lasts 30 s and the call's own deadline 60 s: only the cancellation can end it within 10.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, timeout=10)


async def test_stall_does_not_block_other_requests(fake: FakeOpenAI) -> None:
    fake.script(stall(30))
    slow = asyncio.create_task(_ask(_config(fake, timeout_s=60)))
    try:
        await _in_flight(fake, 1)  # the stall is the slow call's, not the next one's
        await asyncio.wait_for(_ask(_config(fake)), timeout=10)  # the stall lasts 30 s
        assert not slow.done(), "the second call was answered while the first still waited"
    finally:
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow


def test_every_model_error_is_a_model_error() -> None:
    assert issubclass(PermanentModelError, ModelError)
    assert issubclass(RetryableModelError, ModelError)
    assert issubclass(InvalidModelOutput, PermanentModelError)
    assert issubclass(RateLimited, RetryableModelError)
    assert not issubclass(PermanentModelError, RetryableModelError)


@pytest.mark.parametrize(
    ("instance", "schema", "problems"),
    [
        (True, {"type": "integer"}, ["(root): expected integer, got boolean"]),
        (3.0, {"type": "integer"}, []),
        (3.5, {"type": "integer"}, ["(root): expected integer, got number"]),
        ("x", {"type": ["string", "null"]}, []),
        (None, {"type": ["string", "null"]}, []),
        ("hard", {"enum": ["easy"]}, ['(root): expected one of ["easy"], got "hard"']),
        (7, {"type": "integer", "minimum": 0, "maximum": 5}, ["(root): expected at most 5, got 7"]),
        (
            {"a": 1, "b": 2},
            {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
            ["(root): unexpected property 'b'"],
        ),
        ({}, {"type": "object", "required": ["a"]}, ["(root): missing required property 'a'"]),
        ([1], {"type": "array", "minItems": 2}, ["(root): expected at least 2 items, got 1"]),
        ([1, 2, 3], {"type": "array", "maxItems": 2}, ["(root): expected at most 2 items, got 3"]),
        (
            {"x": [{"y": "no"}]},
            {
                "$defs": {"Y": {"type": "object", "properties": {"y": {"type": "boolean"}}}},
                "type": "object",
                "properties": {"x": {"type": "array", "items": {"$ref": "#/$defs/Y"}}},
            },
            ["x[0].y: expected boolean, got string"],
        ),
        (
            5,
            {"anyOf": [{"type": "string"}, {"type": "null"}]},
            ["(root): matches none of the allowed shapes (closest: (root): expected string, got integer)"],
        ),
    ],
)
def test_schema_problems(instance: Any, schema: dict[str, Any], problems: list[str]) -> None:
    assert schema_problems(instance, schema) == problems
