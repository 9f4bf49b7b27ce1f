"""`bgtasks usage`: model calls, tokens and their cost per user and task type (GET /api/usage), for a day or
a time range; a user sees their own, a superuser everyone's (or --user's)."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .. import tables
from ..client import (
    USAGE,
    CliError,
    add_client_arguments,
    api_get,
    command,
    show_rows,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("usage", help="model calls, tokens and cost (USD) per user and task type")
    p.add_argument("--day", help="one UTC day, YYYY-MM-DD (or 'today')")
    p.add_argument("--since", help="calls at or after this ISO time")
    p.add_argument("--until", help="calls before this ISO time")
    p.add_argument("--user", help="one user's usage (superusers)")
    p.add_argument("--type", help="task types, comma-separated")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    add_client_arguments(p)
    p.set_defaults(func=command(run))


def _window(args: argparse.Namespace) -> dict[str, str]:
    params: dict[str, str] = {}
    if args.day:
        if args.since or args.until:
            raise CliError("--day: give either --day or --since/--until", USAGE)
        try:
            day = datetime.now(UTC).date() if args.day == "today" else date.fromisoformat(args.day)
        except ValueError:
            raise CliError(f"--day: not a date (YYYY-MM-DD): {args.day!r}", USAGE) from None
        start = datetime.combine(day, time(), UTC)
        params["since"], params["until"] = start.isoformat(), (start + timedelta(days=1)).isoformat()
    if args.since:
        params["since"] = args.since
    if args.until:
        params["until"] = args.until
    return params


def run(args: argparse.Namespace) -> int:
    params = _window(args)
    if args.user:
        params["userId"] = args.user
    if args.type:
        params["type"] = args.type
    return show_rows(args, api_get(args, "/api/usage", params)["usage"], table)


def _usd(row: dict[str, Any]) -> str:
    cost = row.get("costUsd")
    text = "-" if cost is None else f"${cost:,.4f}"
    if row.get("unpricedCalls"):
        text += f" (+{row['unpricedCalls']} unpriced)"
    return text


HEADERS = ("USER", "TYPE", "CALLS", "TASKS", "PROMPT", "COMPLETION", "COST")


def table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        tables.show(tables.dim("(no model calls in this window)"))
        return
    body: list[tuple[tables.Cell, ...]] = [
        (r["userId"], r["taskType"], r["calls"], r["tasks"], f"{r['promptTokens']:,}",
         f"{r['completionTokens']:,}", _usd(r)) for r in rows]
    total = sum(float(r.get("costUsd") or 0) for r in rows)
    body.append((tables.styled("total", "bold"), "", sum(r["calls"] for r in rows), sum(r["tasks"] for r in rows),
                 f"{sum(r['promptTokens'] for r in rows):,}", f"{sum(r['completionTokens'] for r in rows):,}",
                 tables.styled(f"${total:,.4f}", "bold")))
    tables.print_table(HEADERS, body, right=HEADERS[2:])
