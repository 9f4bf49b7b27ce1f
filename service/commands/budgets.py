"""`bgtasks budgets`: provider budgets in the database (provider_budgets): list them as they stand, set one,
remove one. Operators' tool, like `bgtasks limits`; superusers over HTTP use /api/provider-budgets. A change
applies to the next model call on every worker."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Any

from .. import tables
from ..store import budgets
from . import with_conn

EXIT_USAGE, EXIT_NOT_FOUND = 2, 3
_OFF_WORDS = ("none", "null", "off", "-")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("budgets", help="provider budgets: requests and tokens per minute for the whole fleet")
    bs = p.add_subparsers(dest="budgets_command", metavar="ACTION", required=True)
    a = bs.add_parser("ls", help="every provider budget, with what it counts now")
    a.add_argument("--json", action="store_true", help="one JSON array")
    a.set_defaults(func=run_ls)
    a = bs.add_parser("set", help="create or change the budget of a provider (its base URL) and model")
    a.add_argument("provider", help="the base URL model calls go to, e.g. https://api.openai.com/v1")
    a.add_argument("--model", default="*", help="a model name; '*' (the default): the provider's other models")
    a.add_argument("--rpm", metavar="N", help="requests per minute; 'none': not limited")
    a.add_argument("--tpm", metavar="N", help="tokens per minute; 'none': not limited")
    a.add_argument("--window", metavar="SECONDS", help="the minute the limits count over (default 60)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_set)
    a = bs.add_parser("rm", help="remove a budget: its calls are no longer counted, its waiting tasks run")
    a.add_argument("provider")
    a.add_argument("--model", default="*")
    a.set_defaults(func=run_rm)


class _Usage(Exception):
    pass


def _limit(option: str, text: str | None) -> int | None:
    if text is None or text.strip().lower() in _OFF_WORDS:
        return None
    try:
        n = int(text)
    except ValueError:
        raise _Usage(f"--{option}: a whole number of at least 1, or 'none'") from None
    if not 1 <= n <= 1_000_000_000:
        raise _Usage(f"--{option}: between 1 and 1000000000, or 'none'")
    return n


def _window(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _Usage("--window: a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise _Usage("--window: above 0 and at most 3600 seconds")
    return value


def _show(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    headers = ("PROVIDER", "MODEL", "RPM", "TPM", "WINDOW S", "REQUESTS NOW", "TOKENS NOW", "WAITING", "WAITS",
               "429S")
    tables.print_table(headers, [
        (r["provider"], r["model"], _cell(r["requests_per_minute"]), _cell(r["tokens_per_minute"]),
         f"{r['window_seconds']:g}", r["requests_counted"], r["tokens_counted"], r["tasks_waiting"], r["waits"],
         r["rate_limited"]) for r in rows], right=headers[2:],
        empty="(no budgets: bgtasks budgets set URL --rpm N)")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def run_ls(args: argparse.Namespace) -> int:
    rows = asyncio.run(with_conn(budgets.list_all))
    _show([dict(r) for r in rows], args.json)
    return 0


def run_set(args: argparse.Namespace) -> int:
    provider, model = args.provider.strip().rstrip("/"), args.model.strip() or "*"
    try:
        if not provider:
            raise _Usage("provider: the base URL model calls go to")
        rpm, tpm, window = _limit("rpm", args.rpm), _limit("tpm", args.tpm), _window(args.window)
        if rpm is None and tpm is None:
            raise _Usage("set: give --rpm, --tpm or both (to remove a budget: bgtasks budgets rm)")
    except _Usage as exc:
        print(f"bgtasks: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def apply(conn: Any) -> Any:
        await budgets.set_budget(conn, provider, model, rpm, tpm, window)
        return await budgets.get(conn, provider, model)

    _show([dict(asyncio.run(with_conn(apply)))], args.json)
    return 0


def run_rm(args: argparse.Namespace) -> int:
    provider, model = args.provider.strip().rstrip("/"), args.model.strip() or "*"
    if not asyncio.run(with_conn(lambda conn: budgets.delete(conn, provider, model))):
        print(f"bgtasks: no budget for provider {provider!r}, model {model!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"budget of {provider} (model {model}) removed")
    return 0
