"""Named SQL queries loaded once from service/sql/*.sql, for asyncpg ($1) and psycopg (%(p1)s) alike.

A file holds blocks that start with `-- name: NAME` and a `-- One line that says what it does.`; the SQL
uses asyncpg's $1, $2 placeholders. The psycopg form is derived here, so each query is written once.

A condition several queries share (the list filter) is a `-- fragment: NAME` block, written once and placed
into a query, at load, where it says `{{NAME}}`; a fragment is text, not a query, and cannot be run alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.M)
_PARAM = re.compile(r"\$(\d+)")
_USE = re.compile(r"\{\{([a-z_][a-z0-9_]*)\}\}")


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


def _blocks(text: str) -> list[tuple[str, str, str, str]]:
    """(kind, name, description, sql) of each `-- name:` or `-- fragment:` block of a file."""
    parts = _NAME.split(text)
    out = []
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        lines = body.strip("\n").splitlines()
        doc = [ln.lstrip("-").strip() for ln in lines if ln.startswith("--")]
        sql = "\n".join(ln for ln in lines if not ln.startswith("--")).strip().rstrip(";")
        out.append((kind, name, " ".join(doc), sql))
    return out


def parse(*texts: str) -> dict[str, Query]:
    """The queries of the given files' texts (names unique across them); `{{NAME}}` takes any file's fragment."""
    found: dict[str, dict[str, tuple[str, str]]] = {"name": {}, "fragment": {}}
    for text in texts:
        for kind, name, doc, sql in _blocks(text):
            if name in found["name"] or name in found["fragment"]:
                raise ValueError(f"{kind} {name!r} is defined twice")
            found[kind][name] = (doc, sql)
    shared = {name: sql for name, (_, sql) in found["fragment"].items()}

    def expand(name: str, sql: str) -> str:
        def use(m: re.Match[str]) -> str:
            if m.group(1) not in shared:
                raise ValueError(f"query {name!r} uses the unknown fragment {m.group(1)!r}")
            return shared[m.group(1)]

        return _USE.sub(use, sql)

    return {name: Query(name, doc, expand(name, sql)) for name, (doc, sql) in found["name"].items()}


@cache
def load() -> dict[str, Query]:
    """Every query of every file in service/sql, by name (names are unique across files)."""
    files = sorted(resources.files("bgtasks.sql").iterdir(), key=lambda e: e.name)
    return parse(*(e.read_text() for e in files if e.name.endswith(".sql")))


def get(name: str) -> Query:
    return load()[name]
