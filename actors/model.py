"""The one place that talks to the model: structured JSON answers through the official openai client, checked
against their schema, with openai's exceptions translated once into our retryable/permanent errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from bgtasks.actors.errors import (
    InvalidModelOutput,
    PermanentModelError,
    RateLimited,
    RetryableModelError,
)
from bgtasks.actors.json_schema import schema_problems, wire_schema
from bgtasks.actors.model_stream import OnText, read_stream
from bgtasks.actors.openai_errors import seconds, translate
from bgtasks.actors.provider_signals import ProviderSignals, provider_signals

__all__ = [
    "DEFAULT_BASE_URL",
    "Budget",
    "ModelConfig",
    "ModelUsage",
    "OnText",
    "ProviderSignals",
    "complete_json",
    "complete_text",
    "estimate_tokens",
    "provider_signals",
    "require_api_key",
    "schema_problems",
    "wire_schema",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY_MESSAGE = "API key not configured for provider: openai"

# How much of a rejected answer is echoed back when re-asking; enough for the model to see its mistake.
_ECHO_LIMIT = 8_000
# How many schema problems one error message lists; the rest are counted.
_SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class ModelConfig:
    """What a call needs to reach the model; built once from settings and passed down.

    ``max_model_retries`` is not used here: the openai client's own retries are always 0 (they would stack with
    the broker's), and the broker reads this field to bound how often a task is re-run for model errors.
    ``timeout_s`` is the total time of one call, however slowly the server trickles its answer.
    ``max_output_tokens`` is the output limit every call sends; an answer cut off at it is asked once more with
    the limit raised up to ``max_output_tokens_cap``. ``max_answer_chars`` caps an answer's size: a larger one
    fails the task rather than being parsed and stored.
    """

    api_key: str | None
    base_url: str | None
    model: str
    timeout_s: float
    max_model_retries: int
    max_output_tokens: int = 4_096
    max_output_tokens_cap: int = 16_384
    max_answer_chars: int = 1_000_000

    @property
    def endpoint(self) -> str:
        """The base URL requests go to, for messages (never read from the environment)."""
        return (self.base_url or DEFAULT_BASE_URL).rstrip("/")


@dataclass(frozen=True)
class ModelUsage:
    """Token usage and wall time of one model call, stored with the task."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    duration_ms: int
    cached_prompt_tokens: int = 0  # of prompt_tokens, served from the provider's prompt cache (cheaper)


class Budget(Protocol):
    """The fleet's budget for the provider (service/provider_budgets.py): ``reserve`` before each call (raises
    ``WaitingForBudget`` when there is no room; returns what ``settle`` needs), ``settle`` after it with the
    tokens it used (None: unknown) and the provider's signals."""

    async def reserve(self, model: str, estimate: int, usages: list[ModelUsage]) -> Any: ...

    async def settle(self, ticket: Any, used_tokens: int | None, signals: ProviderSignals) -> None: ...


def estimate_tokens(messages: list[ChatCompletionMessageParam], response_format: Any, output_limit: int) -> int:
    """What a call may use, as providers count it against a token limit before it runs: the prompt at about
    four characters a token (the schema included) plus the whole output limit."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    if response_format is not None:
        chars += len(json.dumps(response_format))
    return -(-chars // 4) + output_limit


def require_api_key(config: ModelConfig) -> None:
    """No key: a permanent error with the seed's message (actors check this before any other work)."""
    if not config.api_key or not config.api_key.strip():
        raise PermanentModelError(NO_KEY_MESSAGE)


async def complete_json(
    config: ModelConfig,
    *,
    system: str,
    user: str,
    schema_name: str,
    schema: dict[str, Any],
    validate_attempts: int = 2,
    check: Callable[[dict[str, Any]], list[str]] | None = None,
    on_text: OnText | None = None,
    budget: Budget | None = None,
) -> tuple[dict[str, Any], list[ModelUsage]]:
    """Ask the model for a JSON object matching ``schema`` and return it with the usage of every call made.

    An answer that is not JSON or breaks the schema is shown back to the model with what was wrong, up to
    ``validate_attempts`` answers in all; then ``InvalidModelOutput`` (permanent: re-running the same prompt
    repeats the same paid calls) names the problem. Transport and HTTP
    failures raise ``RetryableModelError``/``PermanentModelError`` at once: retries belong to the broker.
    ``check`` adds problems a schema cannot express (e.g. "not an emoji"), re-asked the same way.
    Cancelling the calling task abandons the HTTP request and closes the connection.
    Every call streams; ``on_text`` receives the answer's text as it arrives (a re-ask's answer after the
    first one's). ``budget``: every call (re-asks too) first reserves room in the fleet's provider budget.
    """
    if validate_attempts < 1:
        raise ValueError("validate_attempts must be at least 1")
    require_api_key(config)

    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]
    response_format: ResponseFormatJSONSchema = {
        "type": "json_schema",
        "json_schema": {"name": schema_name, "schema": wire_schema(schema), "strict": True},
    }
    output_limit = min(config.max_output_tokens, config.max_output_tokens_cap)
    usages: list[ModelUsage] = []
    problems: list[str] = []
    unreadable = False
    async with _client(config) as client:
        answers = 0
        while answers < validate_attempts:
            answers += 1
            completion = await _call(client, config, messages, response_format, output_limit, usages, on_text,
                                     budget)
            content, problems = _read_answer(completion, schema_name, usages)
            if completion.length > config.max_answer_chars:
                raise PermanentModelError(
                    f"the model's answer for schema '{schema_name}' was {completion.length:,} characters, over the "
                    f"cap of {config.max_answer_chars:,} (the size cap of a model's answer); it was not stored",
                    usage=usages,
                )
            if _cut_off(completion):
                # Re-asking with the same limit is cut off again; only a larger limit can help, once.
                if output_limit >= config.max_output_tokens_cap:
                    raise PermanentModelError(
                        f"the model's answer for schema '{schema_name}' was cut off at the output limit of "
                        f"{output_limit} tokens (finish_reason 'length'), the most this task type allows",
                        usage=usages,
                    )
                output_limit = min(config.max_output_tokens_cap, output_limit * 2)
                answers -= 1
                continue
            unreadable = bool(problems)
            if not unreadable:
                parsed = json.loads(content)
                problems = schema_problems(parsed, schema)
                if not problems and check is not None:
                    problems = check(parsed)
                if not problems:
                    return parsed, usages
            messages += [
                {"role": "assistant", "content": content[:_ECHO_LIMIT]},
                {"role": "user", "content": _reask(schema_name, problems)},
            ]

    raise InvalidModelOutput(
        _invalid_message(schema_name, problems, unreadable),
        problems=problems,
        attempts=validate_attempts,
        usage=usages,
    )


async def complete_text(
    config: ModelConfig,
    *,
    system: str,
    user: str,
    on_text: OnText | None = None,
    budget: Budget | None = None,
) -> tuple[str, list[ModelUsage]]:
    """Ask the model for free text, streamed: ``on_text`` receives each piece as it arrives; returns the whole
    text with the call's usage. The same bounds and error translation as ``complete_json``; an answer cut off at
    the output limit is returned as it is (free text has no shape to break)."""
    require_api_key(config)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]
    usages: list[ModelUsage] = []
    output_limit = min(config.max_output_tokens, config.max_output_tokens_cap)
    async with _client(config) as client:
        completion = await _call(client, config, messages, None, output_limit, usages, on_text, budget)
    if completion.length > config.max_answer_chars:
        raise PermanentModelError(
            f"the model's answer was {completion.length:,} characters, over the cap of "
            f"{config.max_answer_chars:,} (the size cap of a model's answer); it was not stored",
            usage=usages,
        )
    content, _problems = _read_answer(completion, "text", usages)
    return content, usages


def _client(config: ModelConfig) -> AsyncOpenAI:
    # One client per call: a task makes a handful of minute-long requests, so pooling across tasks buys
    # little, and a client per call cannot leak connections or be shared across event loops by mistake.
    return AsyncOpenAI(
        api_key=config.api_key,
        base_url=config.endpoint,  # explicit, so the client never falls back to OPENAI_BASE_URL on its own
        timeout=config.timeout_s,
        max_retries=0,
    )


async def _call(
    client: AsyncOpenAI,
    config: ModelConfig,
    messages: list[ChatCompletionMessageParam],
    response_format: ResponseFormatJSONSchema | None,
    output_limit: int,
    usages: list[ModelUsage],
    on_text: OnText | None = None,
    budget: Budget | None = None,
) -> Any:
    """One streamed request under a total deadline: the client's own timeout restarts on every chunk it reads,
    so a server trickling bytes could hold the call forever. Leaving the timeout block cancels the request,
    which closes its connection. With a ``budget``, the call first reserves its room (or raises
    ``WaitingForBudget`` without calling) and settles it afterwards, whatever the outcome."""
    ticket = None
    if budget is not None:
        ticket = await budget.reserve(config.model, estimate_tokens(messages, response_format, output_limit), usages)
    signals = ProviderSignals()
    used: int | None = None
    started = time.monotonic()
    extra: dict[str, Any] = {"response_format": response_format} if response_format is not None else {}
    try:
        async with asyncio.timeout(config.timeout_s):
            stream = await client.chat.completions.create(
                model=config.model,
                messages=messages,
                max_completion_tokens=output_limit,
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            )
            signals = provider_signals(stream.response.headers)  # as old as the answer's start
            completion = await read_stream(stream, config.max_answer_chars, on_text)
    except TimeoutError as exc:
        raise RetryableModelError(
            f"model endpoint {config.endpoint} did not answer within {seconds(config.timeout_s)} "
            "(BGTASKS_MODEL_TIMEOUT_S, the total time of one call)",
            usage=usages,
        ) from exc
    except openai.OpenAIError as exc:
        error = translate(exc, config, usages)
        if isinstance(exc, openai.APIStatusError):
            signals = provider_signals(exc.response.headers, rate_limited=isinstance(error, RateLimited),
                                       retry_after_s=getattr(error, "retry_after", None))
        raise error from exc
    else:
        usages.append(_usage(completion, config, started))
        used = usages[-1].total_tokens
    finally:
        if ticket is not None and budget is not None:
            await budget.settle(ticket, used, signals)
    return completion


def _cut_off(completion: Any) -> bool:
    return bool(completion.choices) and completion.choices[0].finish_reason == "length"


# ---------------------------------------------------------------------------------------------------------
# Reading answers


def _usage(completion: Any, config: ModelConfig, started: float) -> ModelUsage:
    usage = completion.usage
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    output = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or 0) or prompt + output
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0)
    return ModelUsage(
        model=completion.model or config.model,
        prompt_tokens=prompt,
        completion_tokens=output,
        total_tokens=total,
        duration_ms=round((time.monotonic() - started) * 1000),
        cached_prompt_tokens=min(cached, prompt),
    )


def _read_answer(completion: Any, schema_name: str, usages: list[ModelUsage]) -> tuple[str, list[str]]:
    """The answer's text and what keeps it from being JSON (empty when it parses)."""
    if not completion.choices:
        return "", ["the response contained no choices"]
    choice = completion.choices[0]
    message = choice.message
    if getattr(message, "refusal", None):
        # A refusal repeats for the same input; re-running the task would only burn tokens.
        raise PermanentModelError(
            f"the model refused to answer for schema '{schema_name}': {message.refusal}", usage=usages
        )
    if choice.finish_reason == "content_filter":
        raise PermanentModelError(
            f"the model's answer for schema '{schema_name}' was blocked by the provider's content filter",
            usage=usages,
        )
    content = message.content or ""
    if choice.finish_reason == "length":
        return content, ["the answer was cut off at the model's output token limit (finish_reason 'length')"]
    if not content.strip():
        return content, ["the answer was empty"]
    try:
        json.loads(content)
    except json.JSONDecodeError as exc:
        return content, [f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]
    return content, []


def _reask(schema_name: str, problems: list[str]) -> str:
    listed = "\n".join(f"- {p}" for p in problems[:_SHOWN_PROBLEMS])
    return (
        f"Your previous answer could not be used:\n{listed}\n"
        f"Answer again with only a JSON object that matches the schema '{schema_name}' exactly."
    )


def _invalid_message(schema_name: str, problems: list[str], unreadable: bool) -> str:
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    if len(problems) > _SHOWN_PROBLEMS:
        shown += f" (and {len(problems) - _SHOWN_PROBLEMS} more)"
    if unreadable:
        return f"model output for schema '{schema_name}' was not usable JSON: {shown}"
    return f"model output did not match schema '{schema_name}': {shown}"
