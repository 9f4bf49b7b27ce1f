"""`bgtasks schedules ls|add|rm|enable|disable`: cron schedules that create tasks on time (docs/workflows.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from .. import tables
from ..errors import ValidationFailed
from . import database_url


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("schedules", help="list, add, remove, enable or disable cron schedules")
    ops = p.add_subparsers(dest="op", metavar="OP", required=True)
    ops.add_parser("ls", help="list every schedule")
    add = ops.add_parser("add", help="add a schedule")
    add.add_argument("name")
    add.add_argument("task_type", metavar="TASK_TYPE")
    add.add_argument("cron", help="5 fields (m h dom mon dow) or 6 with seconds first; quote it")
    add.add_argument("--user", required=True, help="owner of the tasks it creates")
    add.add_argument("--payload", default="{}", help="JSON object (default {})")
    add.add_argument("--timezone", default="UTC")
    add.add_argument("--catch-up", choices=("skip", "once"), default="skip")
    add.add_argument("--priority", type=int, default=0)
    add.add_argument("--max-retries", type=int, default=3)
    add.add_argument("--label")
    add.add_argument("--disabled", action="store_true", help="create it disabled")
    for op, text in (("rm", "remove a schedule (its tasks stay)"), ("enable", "enable a schedule"),
                     ("disable", "disable a schedule")):
        one = ops.add_parser(op, help=text)
        one.add_argument("name")
        one.add_argument("--user", help="its owner, when several users have a schedule of that name")
    p.set_defaults(func=run)


HEADERS = ("NAME", "STATE", "CRON", "TIMEZONE", "TYPE", "USER", "CATCH UP", "NEXT RUN (UTC)", "LAST RUN (UTC)",
           "LAST ERROR")


def _table(rows: list[Any]) -> None:
    tables.print_table(HEADERS, [
        (r["name"], tables.status("on" if r["enabled"] else "off"), r["cron"], r["timezone"], r["task_type"],
         r["user_id"], r["catch_up"], tables.when(r["next_run_at"]), tables.when(r["last_run_at"]),
         tables.styled(r["last_error"], "red") if r["last_error"] else "") for r in rows],
        wrap=("LAST ERROR",), empty="(no schedules: bgtasks schedules add NAME TYPE CRON --user OWNER)")


async def _run(url: str, args: argparse.Namespace) -> int:
    from .. import db
    from ..store import workflows as store

    conn = await db.connect(url)
    try:
        if args.op == "ls":
            _table(list(await store.list_schedules(conn, None)))
            return 0
        if args.op == "add":
            try:
                payload = json.loads(args.payload)
            except ValueError as exc:
                raise ValidationFailed("--payload", f"not JSON: {exc}") from exc
            if not isinstance(payload, dict):
                raise ValidationFailed("--payload", "expected a JSON object")
            r = await store.create_schedule(
                conn, name=args.name, task_type=args.task_type, user_id=args.user, cron=args.cron,
                payload=payload, timezone=args.timezone, enabled=not args.disabled, catch_up=args.catch_up,
                priority=args.priority, max_retries=args.max_retries, label=args.label)
        elif args.op == "rm":
            r = await store.delete_schedule(conn, args.name, args.user)
            print(f"removed {r['name']}")
            return 0
        else:
            r = await store.update_schedule(conn, args.name, args.user, enabled=args.op == "enable")
        _table([r])
        return 0
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(database_url(), args))
