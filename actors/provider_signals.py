"""What an OpenAI-compatible provider says about its own rate limits with one response (a 429 and its
Retry-After, the x-ratelimit-* headers), read leniently for the fleet's provider budget."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProviderSignals:
    """What the provider said about its own limits with one response: a 429 (and its Retry-After), and the
    ``x-ratelimit-remaining-*``/``x-ratelimit-reset-*`` headers OpenAI-compatible providers send. ``seen_at`` is
    when the headers arrived (``time.monotonic()``): a streamed answer's headers are as old as its start."""

    rate_limited: bool = False
    retry_after_s: float | None = None
    requests_left: int | None = None
    requests_reset_s: float | None = None
    tokens_left: int | None = None
    tokens_reset_s: float | None = None
    seen_at: float | None = None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _reset_seconds(value: str | None) -> float | None:
    """``x-ratelimit-reset-*`` as seconds: OpenAI writes durations ("1s", "6m0s", "20ms"); a bare number is
    seconds."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _count(value: str | None) -> int | None:
    try:
        return max(0, int(float(value))) if value else None
    except ValueError:
        return None


def provider_signals(headers: Any, *, rate_limited: bool = False, retry_after_s: float | None = None,
                     seen_at: float | None = None) -> ProviderSignals:
    """The provider's rate-limit headers of one response (a mapping with ``get``), read leniently: a header
    missing or unreadable is None."""
    return ProviderSignals(
        rate_limited=rate_limited,
        retry_after_s=retry_after_s,
        requests_left=_count(headers.get("x-ratelimit-remaining-requests")),
        requests_reset_s=_reset_seconds(headers.get("x-ratelimit-reset-requests")),
        tokens_left=_count(headers.get("x-ratelimit-remaining-tokens")),
        tokens_reset_s=_reset_seconds(headers.get("x-ratelimit-reset-tokens")),
        seen_at=time.monotonic() if seen_at is None else seen_at,
    )
