"""bench/budget_change.py (issue 18's "a budget change takes effect within a second", measured, not asserted):
the module imports and its command line reads as documented. The run itself is the benchmark's, not CI's."""

from __future__ import annotations

import pytest

from bench import budget_change


def test_defaults_are_five_rounds_of_four_waiting_tasks_on_a_throwaway_server() -> None:
    opts = budget_change.parse_args([])
    assert (opts.rounds, opts.tasks, opts.database_url) == (5, 4, None)


def test_options_are_read() -> None:
    opts = budget_change.parse_args(
        ["--rounds", "2", "--tasks", "3", "--database-url", "postgresql://x@h/db"]
    )
    assert (opts.rounds, opts.tasks, opts.database_url) == (2, 3, "postgresql://x@h/db")


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--tasks", "0"], ["--rounds", "many"]])
def test_bad_numbers_are_refused_naming_the_option(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        budget_change.parse_args(argv)
    assert exit_.value.code == 2
    assert argv[0] in capsys.readouterr().err
