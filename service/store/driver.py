"""How the store runs a named query on each driver. psycopg (worker threads, the CLI, actors): `run()`.
asyncpg (the API): `conn.fetch(queries.get(name).sql, …)` directly, since asyncpg prepares and caches each
statement itself (its cache is off through a transaction pooler: service/db.py)."""

from __future__ import annotations

from typing import Any

import psycopg

from .. import queries

Conn = psycopg.Connection[Any]


def run(conn: Conn, name: str, *args: object) -> psycopg.Cursor[Any]:
    """The named query with `args` as $1, $2, …; prepared on the server unless the connection may not keep
    prepared statements: one made with prepare_threshold=None, through a transaction pooler
    (service/connections.py)."""
    q = queries.get(name)
    return conn.execute(q.psycopg_sql, q.psycopg_params(*args), prepare=conn.prepare_threshold is not None)


def value(cur: psycopg.Cursor[Any]) -> Any:
    """The first column of the cursor's first row (None without a row), whatever the row factory."""
    row = cur.fetchone()
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
