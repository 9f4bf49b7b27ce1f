"""Database edges: connection pools (asyncpg for the API, psycopg for worker threads), migrations, and the
schema-version check that refuses to run code newer than its schema. Driver errors are translated here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
from psycopg.rows import dict_row

from .errors import (
    BgtasksError,
    IllegalTransition,
    LimitReached,
    RateLimited,
    SchemaOutdated,
    TaskNotFound,
    ValidationFailed,
)
from .logs import quiet_driver_pools

VERSION_TABLE = "bgtasks_schema_version"


# ---------------------------------------------------------------- migrations

def alembic_config(url: str) -> Any:
    from alembic.config import Config

    from bgtasks import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
        return row[0] if row else None


def migrate(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def check_schema(url: str) -> None:
    """Raise SchemaOutdated (with the command that fixes it) unless the database is at our head revision."""
    current, head = current_revision(url), head_revision()
    if current != head:
        raise SchemaOutdated(
            f"database schema is at {current or 'nothing (empty database)'}, this code needs {head}: "
            "run `bgtasks migrate`"
        )


# ---------------------------------------------------------------- pools

async def _init_asyncpg(conn: asyncpg.Connection) -> None:
    for typ in ("jsonb", "json"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# A new connection that has not answered in this long will not (a host gone, a path black-holed): asyncpg's
# default of 60 s would hold a request that long before its 503.
CONNECT_TIMEOUT_S = 5.0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query: our pooled connections leave no session state to reset (no
    SET, LISTEN or session lock: those use connections of their own), and behind a transaction pooler it would
    run on whichever server session comes next (another client's)."""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10, prepare: bool = True,
                      name: str = "bgtasks") -> asyncpg.Pool:
    """The API's pool. No reset query on release (asyncpg's default sends one, a second round trip for every
    pooled statement; an open transaction is still rolled back). `prepare=False` (a transaction pooler): no
    statement cache, so asyncpg prepares only unnamed statements, parsed again in the same round trip as each
    execution."""
    quiet_driver_pools()
    extra: dict[str, Any] = {} if prepare else {"statement_cache_size": 0}
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_asyncpg,
                                     timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": name},
                                     reset=_keep_session, **extra)
    assert pool is not None
    return pool


async def connect(url: str, name: str = "bgtasks") -> asyncpg.Connection:
    """One connection of its own (the hub's LISTEN, a CLI command): a few statements, none kept prepared,
    so it is safe through a transaction pooler too."""
    conn = await asyncpg.connect(url, statement_cache_size=0, timeout=CONNECT_TIMEOUT_S,
                                 server_settings={"application_name": name})
    await _init_asyncpg(conn)
    return conn


def sync_connect(url: str, **kwargs: Any) -> psycopg.Connection[dict[str, Any]]:
    """A psycopg connection for one-off work (CLI commands, tests): autocommit, rows as dicts, and no
    automatic server-side prepares (psycopg's default prepares a query run five times)."""
    kwargs.setdefault("prepare_threshold", None)
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, **kwargs)


# ---------------------------------------------------------------- errors

def translate(exc: BaseException, task_id: str | None = None) -> BgtasksError | None:
    """Our SQLSTATEs as our exceptions (BG404 not found, BG409 illegal move, BG422 bad input naming the field
    in HINT, BG429 rate limit with the seconds to wait in DETAIL, BGLIM a count limit named in HINT); None for
    anything else."""
    state = getattr(exc, "sqlstate", None)
    message = str(getattr(exc, "message", None) or exc).splitlines()[0]
    if state == "BG429":
        detail = str(getattr(exc, "detail", None) or "60")
        return RateLimited(message, int(detail) if detail.isdigit() else 60)
    if state == "BGLIM":
        return LimitReached(message, str(getattr(exc, "hint", None) or ""))
    if state == "BG422":
        field = getattr(exc, "hint", None) or "input"
        return ValidationFailed(field, message.removeprefix(f"{field}: "))
    if state == "BG404":
        return TaskNotFound(task_id or "?")
    if state == "BG409":
        err = IllegalTransition(task_id or "?", "", "")
        err.args = (message,)
        return err
    return None


# Driver errors that mean "the database cannot serve us right now" (restart, failover, outage, a pooler
# or server out of connections), not "this request is wrong": the API answers 503 with Retry-After.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: lost, refused or failed connections (pgbouncer's too)
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, starting up, cancelled query
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, out of memory or disk
    asyncpg.exceptions.PostgresSystemError,  # class 58: I/O errors on the server
    asyncpg.InterfaceError,  # a connection closed under a query
    # A connection killed mid-query can leave asyncpg's protocol in a state it reports as an internal
    # client error; the pool discards that connection.
    asyncpg.exceptions.InternalClientError,
    psycopg.OperationalError,
    OSError,  # refused sockets, DNS, and timeouts (TimeoutError: no pooled connection came in time)
)


def unavailable_reason(exc: BaseException) -> str | None:
    """What a client is told when a driver error means the database is unavailable; None for others."""
    if not isinstance(exc, UNAVAILABLE_ERRORS):
        return None
    if isinstance(exc, asyncpg.exceptions.TooManyConnectionsError):
        return "the database has no free connections"
    if isinstance(exc, asyncpg.exceptions.InsufficientResourcesError):
        return "the database is out of resources"
    if isinstance(exc, asyncpg.exceptions.CannotConnectNowError):
        return "the database is starting up or shutting down"
    if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        return "a query was cancelled or timed out"
    if isinstance(exc, asyncpg.exceptions.OperatorInterventionError):
        return "the database ended the connection (restart or administrator)"
    if isinstance(exc, TimeoutError):
        return "no database connection became free in time"
    if isinstance(exc, ConnectionRefusedError):
        return "the database refused the connection"
    if isinstance(exc, asyncpg.PostgresConnectionError) and "max_client_conn" in str(exc):
        return "the connection pooler has no free connections"
    return "the connection to the database failed"
