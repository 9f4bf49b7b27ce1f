"""`bgtasks migrate`: upgrade the schema to head; `--check` exits 1 when the database is behind."""

from __future__ import annotations

import argparse
import sys

from ..errors import SchemaOutdated


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("migrate", help="upgrade the database schema to this version's head")
    p.add_argument("--check", action="store_true", help="only check; exit 1 if the database is behind")
    p.add_argument("--revision", default="head", help="target revision (default head)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import db
    from ..connections import resolve as resolve_connections
    from ..running import database_url
    from ..settings import load_settings

    settings = load_settings()
    # Migrations take locks and run DDL on a session of their own: the direct URL when one is given; through
    # a transaction pooler without one, refuse with one line (service/connections.py).
    url = resolve_connections(settings, database_url(settings)).direct
    if args.check:
        try:
            db.check_schema(url)
        except SchemaOutdated as exc:
            print(f"bgtasks: {exc}", file=sys.stderr)
            return 1
        print(f"schema is at head ({db.head_revision()})")
        return 0
    db.migrate(url, args.revision)
    print(f"schema is at {db.current_revision(url)}")
    return 0
