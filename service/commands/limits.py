"""`bgtasks limits`: per-user limits in the database (user_limits): list them, show what applies to a user,
set some for a user or the defaults ('*'), reset a user to the defaults. Operators' tool, like `bgtasks keys`;
superusers over HTTP use /api/limits."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .. import tables
from ..client import CliError, command
from ..store import limits
from . import with_conn

EXIT_USAGE, EXIT_NOT_FOUND = 2, 3
# option -> (column, smallest value)
OPTIONS = {
    "max_running": ("max_running", 0),
    "max_created_per_minute": ("max_created_per_minute", 0),
    "max_schedules": ("max_schedules", 0),
    "min_schedule_period": ("min_schedule_period_s", 1),
    "max_streams": ("max_streams", 0),
}
_DEFAULT_WORDS = ("default", "null", "none")
# column (limits.COLUMNS) -> its header in the table
HEADERS = {
    "max_running": "MAX RUNNING",
    "max_created_per_minute": "MAX CREATED/MIN",
    "max_schedules": "MAX SCHEDULES",
    "min_schedule_period_s": "MIN SCHEDULE PERIOD (S)",
    "max_streams": "MAX STREAMS",
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("limits", help="per-user limits: creation rate, running tasks, schedules")
    ls = p.add_subparsers(dest="limits_command", metavar="ACTION", required=True)
    a = ls.add_parser("ls", help="every row of user_limits (the defaults, '*', first)")
    a.add_argument("--json", action="store_true", help="one JSON array")
    a.set_defaults(func=run_ls)
    a = ls.add_parser("show", help="the limits that apply to a user")
    a.add_argument("user", help="a user id, or '*' for the defaults")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_show)
    a = ls.add_parser("set", help="set limits of a user or of '*' (the defaults); others keep their value")
    a.add_argument("user", help="a user id, or '*' for the defaults")
    helps = {
        "max_running": "most tasks processing at once",
        "max_created_per_minute": "most tasks created in any 60 s (HTTP 429 beyond)",
        "max_schedules": "most schedules owned",
        "min_schedule_period": "shortest period of a schedule, in seconds",
        "max_streams": "most open SSE + WebSocket streams per API process (default: BGTASKS_MAX_STREAMS_PER_USER)",
    }
    for option, text in helps.items():
        a.add_argument(
            f"--{option.replace('_', '-')}",
            dest=option,
            metavar="N",
            help=f"{text}; 'default' (for '*': no limit)",
        )
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_set)
    a = ls.add_parser("reset", help="remove a user's own limits: the defaults apply again")
    a.add_argument("user")
    a.set_defaults(func=run_reset)


def _value(option: str, text: str) -> int | None:
    if text.strip().lower() in _DEFAULT_WORDS:
        return None
    lo = OPTIONS[option][1]
    try:
        n = int(text)
    except ValueError:
        raise _Usage(f"--{option.replace('_', '-')}: a number of at least {lo}, or 'default'") from None
    if not lo <= n <= 1_000_000_000:
        raise _Usage(f"--{option.replace('_', '-')}: between {lo} and 1000000000, or 'default'")
    return n


class _Usage(CliError):
    """A usage error: its message on stderr, exit code 2 (`command`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def _user(text: str) -> str:
    user = text.strip()
    if not user or len(user) > 200:
        raise _Usage("user: 1-200 characters")
    return user


def _show(rows: list[dict[str, Any]], as_json: bool, *, own_rows: bool = False) -> None:
    """Limits as a table. `own_rows`: rows of user_limits as stored, where NULL in a user's row means the
    default ('*' row) applies; otherwise the limits that apply, where NULL means no limit."""
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return

    def cell(r: dict[str, Any], c: str) -> tables.Cell:
        if r[c] is not None:
            return f"{r[c]:,}"
        return tables.dim("default" if own_rows and r["user_id"] != limits.DEFAULTS else "no limit")

    heads = [HEADERS[c] for c in limits.COLUMNS]
    tables.print_table(("USER", *heads), [(r["user_id"], *(cell(r, c) for c in limits.COLUMNS)) for r in rows],
                       right=heads)


async def _view(conn: Any, user: str) -> dict[str, Any]:
    return {"user_id": user, **dict(await limits.effective(conn, user))}


def run_ls(args: argparse.Namespace) -> int:
    rows = asyncio.run(with_conn(limits.list_all))
    _show([dict(r) for r in rows], args.json, own_rows=True)
    return 0


@command
def run_show(args: argparse.Namespace) -> int:
    user = _user(args.user)
    _show([asyncio.run(with_conn(lambda conn: _view(conn, user)))], args.json)
    return 0


@command
def run_set(args: argparse.Namespace) -> int:
    user = _user(args.user)
    changes = {OPTIONS[o][0]: _value(o, getattr(args, o)) for o in OPTIONS if getattr(args, o) is not None}
    if not changes:
        raise _Usage("set: give at least one of " + ", ".join(f"--{o.replace('_', '-')}" for o in OPTIONS))

    async def apply(conn: Any) -> dict[str, Any]:
        await limits.set_limits(conn, user, changes)
        return await _view(conn, user)

    _show([asyncio.run(with_conn(apply))], args.json)
    return 0


@command
def run_reset(args: argparse.Namespace) -> int:
    user = _user(args.user)
    if user == limits.DEFAULTS:
        print(
            "bgtasks: the defaults ('*') cannot be reset; use `bgtasks limits set '*' ...`", file=sys.stderr
        )
        return EXIT_USAGE
    row = asyncio.run(with_conn(lambda conn: limits.delete(conn, user)))
    if row is None:
        print(f"bgtasks: user {user!r} has no limits of their own", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"limits of {user!r} removed; the defaults apply")
    return 0
