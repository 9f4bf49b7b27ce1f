"""Named SQL queries loaded once from service/sql/*.sql, for asyncpg ($1) and psycopg (%(p1)s) alike.

A file holds blocks that start with `-- name: NAME` and a `-- One line that says what it does.`; the SQL
uses asyncpg's $1, $2 placeholders. The psycopg form is derived here, so each query is written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.M)
_PARAM = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: str  # asyncpg form: $1, $2

    @property
    def psycopg_sql(self) -> str:
        return _PARAM.sub(lambda m: f"%(p{m.group(1)})s", self.sql.replace("%", "%%"))

    @staticmethod
    def psycopg_params(*args: object) -> dict[str, object]:
        return {f"p{i}": a for i, a in enumerate(args, start=1)}


def parse(text: str) -> dict[str, Query]:
    queries: dict[str, Query] = {}
    parts = _NAME.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = body.strip("\n").splitlines()
        doc = [ln.lstrip("-").strip() for ln in lines if ln.startswith("--")]
        sql = "\n".join(ln for ln in lines if not ln.startswith("--")).strip().rstrip(";")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = Query(name, " ".join(doc), sql)
    return queries


@cache
def load() -> dict[str, Query]:
    """Every query of every file in service/sql, by name (names are unique across files)."""
    out: dict[str, Query] = {}
    for entry in sorted(resources.files("bgtasks.sql").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, q in parse(entry.read_text()).items():
                if name in out:
                    raise ValueError(f"query {name!r} is defined twice")
                out[name] = q
    return out


def get(name: str) -> Query:
    return load()[name]
