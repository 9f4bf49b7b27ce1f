"""Settings: the model and project caps are real, validated settings (issue 17)."""

from __future__ import annotations

import pytest

from bgtasks.errors import ConfigError
from bgtasks.settings import load_settings


def test_model_and_project_caps_have_their_documented_defaults() -> None:
    s = load_settings()
    assert s.bgtasks_model_max_output_tokens == 4_096 and s.bgtasks_model_max_output_tokens_cap == 16_384
    assert s.bgtasks_model_max_answer_chars == 1_000_000 and s.bgtasks_max_result_bytes == 1_000_000
    assert s.bgtasks_project_budget_chars == 200_000 and s.bgtasks_rate_limit_max_wait_s == 900


def test_caps_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGTASKS_PROJECT_BUDGET_CHARS", "50000")
    monkeypatch.setenv("BGTASKS_MAX_RESULT_BYTES", "20000")
    s = load_settings()
    assert s.bgtasks_project_budget_chars == 50_000 and s.bgtasks_max_result_bytes == 20_000


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"bgtasks_project_budget_chars": 10}, "BGTASKS_PROJECT_BUDGET_CHARS"),
        ({"bgtasks_project_budget_chars": "lots"}, "BGTASKS_PROJECT_BUDGET_CHARS"),
        ({"bgtasks_max_result_bytes": 5}, "BGTASKS_MAX_RESULT_BYTES"),
        ({"bgtasks_rate_limit_max_wait_s": -1}, "BGTASKS_RATE_LIMIT_MAX_WAIT_S"),
        ({"bgtasks_model_max_output_tokens": 9000, "bgtasks_model_max_output_tokens_cap": 8000},
         "BGTASKS_MODEL_MAX_OUTPUT_TOKENS"),
        ({"bgtasks_direct_database_url": "mysql://db/x"}, "BGTASKS_DIRECT_DATABASE_URL"),
        ({"bgtasks_pooler": "sometimes"}, "BGTASKS_POOLER"),
    ],
)
def test_an_invalid_cap_stops_the_process_naming_the_variable(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    assert str(caught.value).startswith(f"{named}:")
