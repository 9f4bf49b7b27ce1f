"""A worker's connections: dedicated ones (claims, LISTEN, heartbeats) and the shared pool that actors'
progress, failures and completions use, with a retrying write for what must survive a passing outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ..backoff import backoff_delay
from ..fencing import CallDeadlines

log = logging.getLogger("bgtasks.worker")

# psycopg's pool retries a failed connection with a doubling delay (1, 2, 4 … s) until reconnect_timeout
# (default 300 s): after a 60 s outage it would wait up to a minute more, heartbeats and progress starved of
# connections while the database answers again. Giving an attempt up after 2 s lets the next caller that
# needs a connection start a new one at once: connections come back within a second of the database.
POOL_RECONNECT_S = 2.0


def connect(url: str, timeout: int = 5, *, prepare: bool = True,
            name: str = "bgtasks worker") -> psycopg.Connection[Any]:
    """A dedicated connection; `prepare=False` through a transaction pooler (no server-side statements);
    `name` is its application_name (pg_stat_activity shows which worker a connection belongs to)."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=timeout,
                           application_name=name, **({} if prepare else {"prepare_threshold": None}))


def open_pool(url: str, size: int, *, prepare: bool, name: str) -> ConnectionPool[Any]:
    return ConnectionPool(url, min_size=1, max_size=size, open=True,
                          kwargs={"autocommit": True, "row_factory": dict_row, "application_name": name,
                                  **({} if prepare else {"prepare_threshold": None})},
                          check=ConnectionPool.check_connection, name="bgtasks-worker",
                          reconnect_timeout=POOL_RECONNECT_S)


def write_with_retry(pool: ConnectionPool[Any], deadlines: CallDeadlines,
                     fn: Callable[[psycopg.Connection[Any]], Any], attempts: int = 60) -> Any:
    """A write that must not be lost to a passing database outage (restart, failover); None once given up."""
    for i in range(attempts):
        try:
            with pool.connection(timeout=10) as conn, deadlines.within(conn, 30.0, "a write"):
                return fn(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if i == attempts - 1:
                log.error("giving up a write after %s attempts: %s", attempts, exc)
                return None
            time.sleep(backoff_delay(i, 0.1, 2.0))
    return None
