"""Reading rows in tests: `one()` for a query that must return a row (psycopg's fetchone() may return None,
and a test should say which query found nothing rather than fail on indexing None)."""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg import sql

Row = TypeVar("Row")
Query = str | bytes | sql.SQL | sql.Composed


def one(conn: psycopg.Connection[Row], query: Query, params: Any = None) -> Row:
    """The first row `query` returns; fails naming the query when it returns none."""
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]  # a str built at run time is fine
    assert row is not None, f"no row from: {query!r}"
    return row
