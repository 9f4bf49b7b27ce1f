"""Log lines through outages: repeated failures are counted, not repeated; expected failures lose their
traceback; driver errors that mean "database unavailable" say why."""

from __future__ import annotations

import logging
import sys

import asyncpg
import pytest

from bgtasks import db
from bgtasks.logs import Throttle, WithoutTraceback


def test_a_repeated_warning_passes_once_per_window_then_says_how_many_were_held(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    logger = logging.getLogger("t.throttled")
    logger.addFilter(Throttle(every_s=10, clock=lambda: now[0]))
    with caplog.at_level(logging.INFO, logger="t.throttled"):
        logger.warning("claim failed (%s)", "OperationalError")
        for _ in range(5):
            now[0] += 1
            logger.warning("claim failed (%s)", "AdminShutdown")
            logger.info("task %s interrupted", "t1")  # other levels are never held back
        logger.warning("down", extra={"throttle_key": "another reason"})  # a new kind passes at once
        now[0] += 10
        logger.warning("claim failed (%s)", "OperationalError")
    assert [r.getMessage() for r in caplog.records] == [
        "claim failed (OperationalError)", *["task t1 interrupted"] * 5, "down",
        "claim failed (OperationalError) (5 more like it in the last 15s)"]


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
