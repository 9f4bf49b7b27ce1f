"""The CLI's pure text helpers: durations and --run-at, clipping at words, collapsed tracebacks, times, and
tables that carry no escape codes into a pipe."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bgtasks import durations, tables
from bgtasks.client import CliError
from bgtasks.commands.cleanup import parse_age
from bgtasks.commands.tasks import error_line, run_at, traceback_lines

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d12h", 129600),
                                                ("1w", 604800), ("1.5h", 5400), ("1h 30m", 5400)])
def test_durations_add_their_parts(text: str, seconds: float) -> None:
    assert durations.seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-2h", "2h-", "two hours"])
def test_what_is_not_a_duration_is_none(text: str) -> None:
    assert durations.seconds(text) is None


def test_cleanup_ages_keep_bare_numbers_as_days() -> None:
    assert parse_age("7") == 7 * 86400 and parse_age("7d") == parse_age("1w") and parse_age("12h") == 43200
    with pytest.raises(CliError):
        parse_age("soon")


def test_run_at_is_relative_to_now_or_an_iso_time_utc_unless_offset() -> None:
    assert run_at("+2h", NOW) == (NOW + timedelta(hours=2)).isoformat()
    assert run_at("+1d12h", NOW) == (NOW + timedelta(days=1, hours=12)).isoformat()
    assert run_at("2026-01-06T09:00:00", NOW) == "2026-01-06T09:00:00+00:00"
    assert run_at("2026-01-06T09:00:00Z", NOW) == "2026-01-06T09:00:00+00:00"
    paris = datetime(2026, 1, 6, 9, tzinfo=timezone(timedelta(hours=1)))
    assert run_at("2026-01-06 09:00+01:00", NOW) == paris.isoformat()
    assert run_at(None, NOW) is None
    for bad in ("tomorrow", "+", "+2", "2h", "2026-13-01"):
        with pytest.raises(CliError) as refused:
            run_at(bad, NOW)
        assert refused.value.exit_code == 2 and "--run-at" in str(refused.value)


def test_clip_cuts_at_a_word_with_an_ellipsis() -> None:
    text = "alpha beta gamma delta epsilon"
    assert tables.clip(text, 100) == text
    assert tables.clip(text, 15) == "alpha beta…"
    assert tables.clip("  several\n lines   of text ", 100) == "several lines of text"
    assert tables.clip("x" * 30, 10) == "x" * 9 + "…"  # one word longer than the width: cut, marked


def test_a_traceback_collapses_to_its_first_line_and_innermost_frame() -> None:
    lines = ["Traceback (most recent call last):"] + [f'  File "m{i}.py", line {i}, in f' for i in range(8)] + [
        "    raise RuntimeError('boom')", "RuntimeError: boom"]
    short = traceback_lines("\n".join(lines) + "\n", False, "task_1")
    assert short == [lines[0], "  … 7 more lines (bgtasks show task_1 --traceback)", *lines[-3:]]
    assert traceback_lines("\n".join(lines), True, "task_1") == lines
    assert traceback_lines("\n".join(lines[:4]), False, "task_1") == lines[:4]  # nothing worth hiding


def test_an_error_type_is_written_once() -> None:
    assert error_line("RuntimeError", "boom") == "RuntimeError: boom"
    assert error_line("RuntimeError", "RuntimeError: boom") == "RuntimeError: boom"
    assert error_line("LeaseExpired", None) == "LeaseExpired"


def test_times_are_shown_in_utc() -> None:
    assert tables.when("2026-01-05T11:02:11.482+01:00") == "2026-01-05 10:02:11"
    assert tables.when(datetime(2026, 1, 5, 10, 2, 11, tzinfo=UTC)) == "2026-01-05 10:02:11"
    assert tables.when(None) == "-" and tables.when("not a time") == "not a time"


def test_a_table_into_a_pipe_is_plain_aligned_and_unwrapped() -> None:
    out = io.StringIO()
    long = "word " * 100
    tables.show(tables.table(("ID", "N", "NOTE"), [("a", 1, tables.status("error")), ("bbb", 22, long)],
                             right=("N",), wrap=("NOTE",)), out)
    lines = out.getvalue().splitlines()
    assert lines == ["ID    N  NOTE", "a     1  error", "bbb  22  " + long.strip()]
    assert "\x1b" not in out.getvalue()


def test_every_command_and_action_is_in_the_cli_reference() -> None:
    """docs/cli.md names every subcommand of the parser (and every action of keys, limits, queue, schedules)."""
    import argparse
    from pathlib import Path

    from bgtasks.cli import build_parser

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        found: dict[str, argparse.ArgumentParser] = {}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found.update(action.choices)
        return found

    missing = []
    for name, sub in subcommands(build_parser()).items():
        if f"bgtasks {name}" not in doc:
            missing.append(name)
        missing += [f"{name} {action}" for action in subcommands(sub)
                    if not re.search(rf"bgtasks {name} [^\n`]*\b{action}\b", doc)]
    assert not missing, f"commands missing from docs/cli.md: {missing}"
