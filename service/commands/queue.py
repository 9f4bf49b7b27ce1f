"""`bgtasks queue start|stop|status|limit N`: the queue's settings over the HTTP API (changes: superusers)."""

from __future__ import annotations

import argparse
from typing import Any

from ..client import OK, USAGE, CliError, add_client_arguments, client_from, command, print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("queue", help="start, stop, inspect or limit the queue")
    actions = p.add_subparsers(dest="queue_action", metavar="ACTION", required=True)
    for name, text in (("start", "workers claim tasks again"), ("stop", "no new claims; running tasks finish"),
                       ("status", "settings and task counts")):
        a = actions.add_parser(name, help=text)
        a.add_argument("--json", action="store_true")
        add_client_arguments(a)
        a.set_defaults(func=command(run))
    a = actions.add_parser("limit", help="most tasks processing at once over all workers (none: no limit)")
    a.add_argument("limit", metavar="N", help="a number, or 'none'")
    a.add_argument("--json", action="store_true")
    add_client_arguments(a)
    a.set_defaults(func=command(run))


def _limit(text: str) -> int | None:
    if text.lower() in ("none", "null", "off", "unlimited"):
        return None
    try:
        n = int(text)
    except ValueError:
        raise CliError(f"limit: expected a number or 'none', not {text!r}", USAGE) from None
    if n < 0:
        raise CliError("limit: 0 or more", USAGE)
    return n


def run(args: argparse.Namespace) -> int:
    client = client_from(args)
    try:
        if args.queue_action == "status":
            body = client.request("GET", "/api/queue")
        elif args.queue_action == "limit":
            body = client.request("PATCH", "/api/queue", json={"maxConcurrentTasks": _limit(args.limit)})
        else:
            body = client.request("POST", f"/api/queue/{args.queue_action}")
    finally:
        client.close()
    if args.json:
        print_json({k: v for k, v in body.items() if k != "success"})
        return OK
    print(_describe(body.get("queueSettings") or {}, body.get("taskCounts")))
    return OK


def _describe(settings: dict[str, Any], counts: dict[str, int] | None) -> str:
    limit = settings.get("maxConcurrentTasks")
    limit_text = "none (no limit)" if limit is None else f"{limit} task(s) processing at once"
    lines = [
        f"queue:      {'running' if settings.get('isActive') else 'stopped'}",
        f"limit:      {limit_text}",
        f"poll:       every {settings.get('pollInterval')} ms (workers also wake on NOTIFY)",
        f"last poll:  {settings.get('lastPollAt') or 'never'}",
    ]
    if counts:
        lines.append("tasks:      " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)
