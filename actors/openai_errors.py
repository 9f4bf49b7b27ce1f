"""openai's exceptions translated once into ours: retryable (a timeout, a lost connection, 408/409/5xx, a rate
limit with its Retry-After) or permanent (bad key, no permission, unknown model, exhausted quota, any other 4xx),
each with a sentence that names the endpoint and what to check."""

from __future__ import annotations

import email.utils
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

import openai

from bgtasks.actors.errors import ModelError, PermanentModelError, RateLimited, RetryableModelError

if TYPE_CHECKING:  # model.py imports this module
    from bgtasks.actors.model import ModelConfig, ModelUsage


def translate(exc: openai.OpenAIError, config: ModelConfig, usages: list[ModelUsage]) -> ModelError:
    endpoint = config.endpoint
    if isinstance(exc, openai.APITimeoutError):
        return RetryableModelError(
            f"model endpoint {endpoint} did not answer within {seconds(config.timeout_s)}", usage=usages
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        reason = f": {cause}" if cause and str(cause) else ""
        return RetryableModelError(f"could not reach model endpoint {endpoint}{reason}", usage=usages)
    if isinstance(exc, openai.APIStatusError):
        return _translate_status(exc, config, usages)
    if isinstance(exc, openai.APIResponseValidationError):
        return RetryableModelError(
            f"model endpoint {endpoint} returned a response the openai client could not read", usage=usages
        )
    # Anything else the client raises is a configuration problem on our side (it fails before sending).
    return PermanentModelError(f"the openai client refused the request: {exc}", usage=usages)


def _translate_status(
    exc: openai.APIStatusError, config: ModelConfig, usages: list[ModelUsage]
) -> ModelError:
    code = exc.status_code
    endpoint = config.endpoint
    said = _detail(exc)
    suffix = f" (endpoint said: {said})" if said else ""
    headline = f"{code} {_phrase(code)}"
    if code == 401:
        return PermanentModelError(
            f"authentication failed for provider openai: check OPENAI_API_KEY{suffix}", usage=usages
        )
    if code == 403:
        return PermanentModelError(
            f"permission denied by provider openai for model '{config.model}': check that the key's project may "
            f"use this model{suffix}",
            usage=usages,
        )
    if code == 404:
        return PermanentModelError(
            f"model endpoint {endpoint} returned {headline} for model '{config.model}': check the model name and "
            f"OPENAI_BASE_URL{suffix}",
            usage=usages,
        )
    if code == 429:
        if exc.code == "insufficient_quota" or (
            isinstance(exc.body, dict) and exc.body.get("type") == "insufficient_quota"
        ):
            # Out of credit is a 429 too, but waiting does not refill the account.
            return PermanentModelError(
                "OpenAI quota exhausted (429 insufficient_quota): add credit or raise the limits of the account "
                "behind OPENAI_API_KEY",
                usage=usages,
            )
        retry_after = _retry_after(exc)
        when = f"retry after {seconds(retry_after)}" if retry_after is not None else "no Retry-After given"
        return RateLimited(f"OpenAI rate limit (429) at {endpoint}; {when}", retry_after=retry_after, usage=usages)
    if code in (408, 409) or code >= 500:
        detail = f": {said}" if said else ""
        return RetryableModelError(
            f"model endpoint {endpoint} returned {headline}{detail}",
            retry_after=_retry_after(exc),
            usage=usages,
        )
    return PermanentModelError(
        f"model endpoint {endpoint} rejected the request with {headline}{': ' + said if said else ''}",
        usage=usages,
    )


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"].strip()[:300]
    if isinstance(body, str):
        return body.strip()[:300]
    return ""


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """The server's wait hint in seconds: ``retry-after-ms`` (OpenAI's), else ``Retry-After`` as seconds or
    an HTTP date."""
    headers = exc.response.headers
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def seconds(value: float) -> str:
    return f"{value:g}s"
