"""`bgtasks types`: the task types workers published, with how many live workers serve each (over the HTTP
API, like the task commands: only BGTASKS_URL is needed)."""

from __future__ import annotations

import argparse
from typing import Any

from tabulate import tabulate

from ..client import OK, add_client_arguments, client_from, command, print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("types", help="list task types: published by workers, live workers, limits")
    p.add_argument("--json", action="store_true", help="every type as JSON, payload schemas included")
    add_client_arguments(p)
    p.set_defaults(func=command(run))


def run(args: argparse.Namespace) -> int:
    client = client_from(args)
    try:
        types = client.request("GET", "/api/task-types")["taskTypes"]
    finally:
        client.close()
    if args.json:
        print_json(types)
        return OK
    print(table(types))
    return OK


def table(types: list[dict[str, Any]]) -> str:
    rows = [(t["name"], t["liveWorkers"] if t["published"] else "not published", t["maxRetries"],
             f"{t['timeLimitS']:g}s", (t["description"] or "")[:60]) for t in types]
    if not rows:
        return "(no task types: start a worker with --app MODULE)"
    return tabulate(rows, headers=("TYPE", "LIVE WORKERS", "RETRIES", "TIME LIMIT", "DESCRIPTION"),
                    tablefmt="plain", disable_numparse=True)
