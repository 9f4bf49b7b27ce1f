"""`bgtasks migrate`: upgrade the schema to head; `--check` exits 1 when the database is behind."""

from __future__ import annotations

import argparse
import sys

from .. import db
from ..errors import ConfigError, SchemaOutdated
from ..settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("migrate", help="upgrade the database schema to this version's head")
    p.add_argument("--check", action="store_true", help="only check; exit 1 if the database is behind")
    p.add_argument("--revision", default="head", help="target revision (default head)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.database_url:
        raise ConfigError("DATABASE_URL: not set (`bgtasks up` starts an embedded PostgreSQL and migrates it)")
    if args.check:
        try:
            db.check_schema(settings.database_url)
        except SchemaOutdated as exc:
            print(f"bgtasks: {exc}", file=sys.stderr)
            return 1
        print(f"schema is at head ({db.head_revision()})")
        return 0
    db.migrate(settings.database_url, args.revision)
    print(f"schema is at {db.current_revision(settings.database_url)}")
    return 0
