"""What the provider says about its limits (x-ratelimit-* headers) read by actors/model.py, the token estimate
a call reserves, and a budget wait classified as a wait, not a failure."""

from __future__ import annotations

from bgtasks.actors.errors import WaitingForBudget
from bgtasks.actors.model import estimate_tokens, provider_signals
from bgtasks.middleware.outcome import classify


def test_openai_style_headers_are_read_as_counts_and_seconds() -> None:
    s = provider_signals({"x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "6m0s",
                          "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "20ms"}, seen_at=5.0)
    assert (s.requests_left, s.requests_reset_s, s.tokens_left, s.tokens_reset_s) == (59, 360.0, 149984, 0.02)
    assert s.seen_at == 5.0 and not s.rate_limited
    assert provider_signals({"x-ratelimit-reset-requests": "1h2m3.5s"}).requests_reset_s == 3723.5
    assert provider_signals({"x-ratelimit-reset-requests": "2.5"}).requests_reset_s == 2.5


def test_missing_or_unreadable_headers_are_none() -> None:
    s = provider_signals({"x-ratelimit-remaining-requests": "many", "x-ratelimit-reset-requests": "soon",
                          "x-ratelimit-reset-tokens": "5 s"})
    assert (s.requests_left, s.requests_reset_s, s.tokens_left, s.tokens_reset_s) == (None, None, None, None)


def test_the_estimate_is_the_prompt_at_four_characters_a_token_plus_the_output_limit() -> None:
    messages = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 41}]
    assert estimate_tokens(messages, None, 100) == 21 + 100  # type: ignore[arg-type]
    assert estimate_tokens(messages, {"type": "json_schema"}, 100) > 121  # type: ignore[arg-type]


def test_a_budget_wait_is_a_wait_with_its_budget_not_a_failure() -> None:
    f = classify(WaitingForBudget("no room", provider="http://p/v1", model="*", retry_after=2.5))
    assert f.budget == ("http://p/v1", "*") and f.retry_after_s == 2.5
    assert not f.permanent and not f.rate_limited and f.write
