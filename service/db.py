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
    RateLimited,
    SchemaOutdated,
    TaskNotFound,
    ValidationFailed,
)

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


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_asyncpg)
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_asyncpg(conn)
    return conn


def sync_connect(url: str, **kwargs: Any) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, **kwargs)


# ---------------------------------------------------------------- errors

def translate(exc: BaseException, task_id: str | None = None) -> BgtasksError | None:
    """Our SQLSTATEs as our exceptions (BG404 not found, BG409 illegal move, BG422 bad input naming the field
    in HINT, BG429 rate limit with the seconds to wait in DETAIL); None for anything else."""
    state = getattr(exc, "sqlstate", None)
    message = str(getattr(exc, "message", None) or exc).splitlines()[0]
    if state == "BG429":
        detail = str(getattr(exc, "detail", None) or "60")
        return RateLimited(message, int(detail) if detail.isdigit() else 60)
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
