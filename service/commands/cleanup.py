"""`bgtasks cleanup [--older-than 7d] [--dry-run]`: one retention pass now, against DATABASE_URL (the workers
run the same pass every minute on BGTASKS_RETENTION_DAYS)."""

from __future__ import annotations

import argparse

from .. import durations
from ..client import OK, USAGE, CliError, command


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cleanup", help="delete finished tasks older than an age now (needs DATABASE_URL)")
    p.add_argument("--older-than", help="age such as 7d, 12h, 30m (default BGTASKS_RETENTION_DAYS days)")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per transaction (default 1000)")
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    p.set_defaults(func=command(run))


def parse_age(text: str) -> float:
    """'7d' -> seconds; units s, m, h, d, w (parts add up: 1d12h); a bare number is days."""
    age = durations.seconds(text, bare_unit="d")
    if age is None:
        raise CliError(f"--older-than: expected an age like 7d, 12h or 30m, not {text!r}", USAGE)
    return age


def run(args: argparse.Namespace) -> int:
    import psycopg

    from .. import db
    from ..retention import DAY_S, run_retention
    from ..running import database_url
    from ..settings import load_settings
    from ..store import operations as store

    settings = load_settings()
    url = database_url(settings)
    if args.older_than is not None:
        older_than_s = parse_age(args.older_than)
    elif settings.bgtasks_retention_days > 0:
        older_than_s = settings.bgtasks_retention_days * DAY_S
    else:
        raise CliError("BGTASKS_RETENTION_DAYS is 0 (keep forever): say --older-than AGE", USAGE)
    if not 1 <= args.batch_size <= 100_000:
        raise CliError("--batch-size: between 1 and 100000", USAGE)
    age = f"{older_than_s / DAY_S:g} day(s)"
    try:
        with db.sync_connect(url, connect_timeout=5) as conn:
            if args.dry_run:
                n = store.count_purgeable_tasks(conn, older_than_s)
                print(f"would delete {n} finished task(s) older than {age}")
                return OK
            n = run_retention(conn, older_than_s, args.batch_size)
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot reach the database: {str(exc).strip()}", 5) from None
    print(f"deleted {n} finished task(s) older than {age}")
    return OK
