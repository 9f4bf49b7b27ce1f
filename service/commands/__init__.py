"""Subcommands of `bgtasks`, one module each; exit codes: 0 ok, 1 failed check, 2 usage or config error,
3 not found, 4 refused (conflict), 130 interrupted."""

from __future__ import annotations

from typing import Any


def database_url() -> str:
    """DATABASE_URL, else the database of a running `bgtasks up`. Settings (pydantic) and the drivers are
    imported when a command needs them, not when the parser is built: `bgtasks ls` starts without them."""
    from ..running import database_url as resolve
    from ..settings import load_settings

    return resolve(load_settings())


async def with_conn(fn: Any) -> Any:
    """``await fn(conn)`` on one asyncpg connection to the database, closed afterwards (the operators'
    commands that read and change tables directly)."""
    from .. import db

    conn = await db.connect(database_url())
    try:
        return await fn(conn)
    finally:
        await conn.close()
