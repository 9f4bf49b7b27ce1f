"""Log lines through outages: repeated failures are counted, not repeated; expected failures lose their
traceback; driver errors that mean "database unavailable" say why."""

from __future__ import annotations

import logging
import sys

import asyncpg
import pytest

from bgtasks import db
from bgtasks.logs import Throttled, WithoutTraceback


def test_throttled_logs_once_per_window_then_counts_the_repeats(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    throttled = Throttled(logging.getLogger("t.throttled"), every_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t.throttled"):
        assert throttled.warning("down", "database down") is True
        for _ in range(5):
            now[0] += 1
            assert throttled.warning("down", "database down") is False
        assert throttled.warning("other", "another reason") is True  # a new reason is said at once
        now[0] += 10
        assert throttled.warning("down", "database down") is True
    assert [r.getMessage() for r in caplog.records] == [
        "database down", "another reason", "database down (5 more since 15s ago)"]


def test_without_traceback_keeps_the_exception_as_one_line() -> None:
    try:
        raise asyncpg.exceptions.TooManyConnectionsError('too many connections for role "x"\nmore')
    except asyncpg.PostgresError:
        record = logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1, "Failed to restore %s", ("floor",),
                                   exc_info=sys.exc_info())
    assert WithoutTraceback().filter(record) is True
    assert record.exc_info is None
    assert record.getMessage() == 'Failed to restore floor: TooManyConnectionsError: too many connections for role "x"'


@pytest.mark.parametrize(("exc", "reason"), [
    (asyncpg.exceptions.TooManyConnectionsError("too many"), "the database has no free connections"),
    (asyncpg.exceptions.CannotConnectNowError("starting"), "the database is starting up or shutting down"),
    (asyncpg.exceptions.AdminShutdownError("terminating"), "the database ended the connection (restart or administrator)"),
    (TimeoutError(), "no database connection became free in time"),
    (ConnectionRefusedError(111, "refused"), "the database refused the connection"),
    (asyncpg.exceptions.ProtocolViolationError("no more connections allowed (max_client_conn)"),
     "the connection pooler has no free connections"),
    (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), "the connection to the database failed"),
    (asyncpg.exceptions.UniqueViolationError("dup"), None),  # a bug or a bad request, not an outage
    (ValueError("x"), None),
])
def test_unavailable_reason(exc: BaseException, reason: str | None) -> None:
    assert db.unavailable_reason(exc) == reason
