"""The `bgtasks` command: one subcommand per module in service/commands (each has `register(subparsers)`)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import BgtasksError, NotFound

# Exit codes of every command (docs/operations.md): the same as the HTTP client's (service/client.py).
EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 2, 3, 5
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command killed by SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bgtasks",
        description="Background AI tasks on PostgreSQL: API, workers, live updates. Settings come from "
        "environment variables and .env (see docs/configuration.md).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `bgtasks ls | head`: the reader left; not a database error, nothing to say
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except BgtasksError as exc:
        print(f"bgtasks: {_first_line(exc)}", file=sys.stderr)
        return EXIT_NOT_FOUND if isinstance(exc, NotFound) else EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _unreachable(exc):
            raise
        print(f"bgtasks: cannot reach the database: {_first_line(exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return int(code or 0)


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail a second time."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _unreachable(exc: BaseException) -> bool:
    """A database that is down, unknown or refusing us: an expected failure, not a bug (no traceback)."""
    import asyncpg
    import psycopg
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        return isinstance(exc.orig, psycopg.OperationalError)
    return isinstance(exc, (OSError, psycopg.OperationalError, asyncpg.CannotConnectNowError,
                            asyncpg.InvalidCatalogNameError, asyncpg.InvalidAuthorizationSpecificationError))


if __name__ == "__main__":
    sys.exit(main())
