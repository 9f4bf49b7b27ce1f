"""Task commands over the HTTP API of a running service: `submit`, `ls`, `show`, `cancel`, `retry`, `delete`.
They need no database access, only BGTASKS_URL (and BGTASKS_API_KEY outside development mode)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import RenderableType

from .. import durations, tables
from ..client import (
    OK,
    USAGE,
    CliError,
    add_client_arguments,
    api_get,
    client_from,
    command,
    print_json,
    show_rows,
)
from .watch import follow


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("submit", help="create a task (prints its id; --wait follows it to the end)")
    p.add_argument("task_type", metavar="TYPE", help="task type, e.g. docs, generation, sleep")
    p.add_argument("--payload", default=None, help="the actor's arguments as a JSON object, or @file.json")
    p.add_argument("--priority", type=int, default=None, help="higher runs first (default 0)")
    p.add_argument("--max-retries", type=int, default=None)
    p.add_argument("--project-id")
    p.add_argument("--project-name")
    p.add_argument("--project-path")
    p.add_argument("--label")
    p.add_argument("--description")
    p.add_argument("--idempotency-key", help="a repeated key returns the first task instead of a new one")
    p.add_argument("--run-at", metavar="WHEN", help="run no earlier than WHEN: +DURATION from now (+90s, +30m, "
                   "+2h, +1d12h) or an ISO 8601 time (UTC unless it has an offset)")
    p.add_argument("--depends-on", metavar="ID", action="append",
                   help="run after task ID completed; repeat or comma-separate")
    p.add_argument("--wait", action="store_true", help="follow the task; exit 0 completed, 1 failed, 4 cancelled")
    p.add_argument("--json", action="store_true", help="print the created task as JSON")
    add_client_arguments(p)
    p.set_defaults(func=command(submit))

    p = sub.add_parser("ls", help="list tasks, newest first")
    p.add_argument("--status", action="append", help="pending, processing, completed, error (failed), cancelled; "
                   "repeat or comma-separate")
    p.add_argument("--type", action="append", dest="task_type", help="task type; repeat or comma-separate")
    p.add_argument("--project-id")
    p.add_argument("--user", help="another user's tasks (superusers)")
    p.add_argument("--search", "-q", help="label or description contains")
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="the tasks as a JSON array")
    add_client_arguments(p)
    p.set_defaults(func=command(ls))

    p = sub.add_parser("show", help="one task in full: fields, why it waits, links, attempts, model calls, result")
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--traceback", action="store_true", help="each attempt's whole traceback (default: its ends)")
    p.add_argument("--json", action="store_true", help="the task as JSON (GET /api/tasks/{id}'s task)")
    add_client_arguments(p)
    p.set_defaults(func=command(show))

    for name, verb, fn in (
            ("cancel", "cancel a pending or processing task (exit 4 if it has finished)", cancel),
            ("retry", "run an error or cancelled task again (exit 4 otherwise)", retry),
            ("delete", "delete a task, in any state, with its history (a running task's worker writes nothing "
             "more)", delete)):
        p = sub.add_parser(name, help=verb)
        p.add_argument("task_id", metavar="ID")
        if name == "cancel":
            p.add_argument("--reason", help="why (stored as cancel_reason)")
        p.add_argument("--json", action="store_true")
        add_client_arguments(p)
        p.set_defaults(func=command(fn))


def _payload(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise CliError(f"--payload: {exc}", USAGE) from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--payload: not JSON ({exc})", USAGE) from None
    if not isinstance(value, dict):
        raise CliError("--payload: must be a JSON object", USAGE)
    return value


def submit(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"taskType": args.task_type}
    for key, value in (("payload", _payload(args.payload)), ("priority", args.priority),
                       ("maxRetries", args.max_retries), ("projectId", args.project_id),
                       ("projectName", args.project_name), ("projectPath", args.project_path),
                       ("label", args.label), ("description", args.description),
                       ("runAt", run_at(args.run_at, datetime.now(UTC))),
                       ("dependsOn", _split(args.depends_on) or None)):
        if value is not None:
            body[key] = value
    headers = {"idempotency-key": args.idempotency_key} if args.idempotency_key else {}
    client = client_from(args)
    try:
        task = client.request("POST", "/api/tasks", json=body, headers=headers)["task"]
        if args.json:
            print_json(task)
        else:
            print(task["id"], flush=True)
            # The link on stderr: stdout stays the id alone, for `ID=$(bgtasks submit …)`.
            print(f"dashboard: {client.task_link(task['id'])}", file=sys.stderr, flush=True)
        if args.wait:
            return follow(client, task["id"], out=sys.stderr if args.json else sys.stdout)
        return OK
    finally:
        client.close()


def run_at(text: str | None, now: datetime) -> str | None:
    """--run-at as the API's ISO 8601 runAt."""
    if text is None:
        return None
    when = durations.point_in_time(text, now)
    if when is None:
        raise CliError(f"--run-at: expected +DURATION (+90s, +30m, +2h, +1d12h) or an ISO 8601 time, not {text!r}",
                       USAGE)
    return when.isoformat()


def _split(values: list[str] | None) -> list[str]:
    return [v for item in values or [] for v in item.split(",") if v]


def ls(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit: between 1 and 1000", USAGE)
    params: list[tuple[str, str | int]] = [("limit", args.limit)]
    params += [("status", s) for s in _split(args.status)]
    params += [("type", t) for t in _split(args.task_type)]
    for key, value in (("projectId", args.project_id), ("userId", args.user), ("q", args.search)):
        if value:
            params.append((key, value))
    return show_rows(args, api_get(args, "/api/tasks", params)["tasks"], _table)


def _table(tasks: list[dict[str, Any]]) -> None:
    rows: list[tuple[tables.Cell, ...]] = []
    for t in tasks:
        note: tables.Cell = tables.clip(str(t.get("label") or t.get("description") or ""))
        if t.get("status") in ("error", "cancelled") and t.get("errorMessage"):
            note = tables.styled(tables.clip(str(t["errorMessage"])), "red")
        if t.get("status") == "pending" and isinstance(t.get("waitingFor"), dict):
            note = tables.styled(tables.clip(str(t["waitingFor"].get("text") or "")), "blue")
        rows.append((t["id"], t["taskType"], tables.status(t.get("status")), f"{t.get('progress') or 0}%",
                     tables.when(t.get("createdAt")), note))
    tables.print_table(("ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "LABEL / ERROR / WAITING FOR"), rows,
                       right=("PROGRESS",), wrap=("LABEL / ERROR / WAITING FOR",), empty="(no tasks)")


def show(args: argparse.Namespace) -> int:
    client = client_from(args)
    try:
        detail = client.request("GET", f"/api/tasks/{args.task_id}")
    finally:
        client.close()
    if args.json:
        print_json(detail["task"])
        return OK
    tables.show(_detail(detail, client.task_link(detail["task"]["id"]), full_tracebacks=args.traceback))
    return OK


# Task fields `show` prints elsewhere than in the field list (the result once, at the end; links with states).
_SHOWN_APART = {"result", "resultData", "resultTruncated", "waitingFor", "dependsOn", "dependents"}
TRACEBACK_HEAD, TRACEBACK_TAIL = 1, 3  # a collapsed traceback: its first line and its innermost frame


def _detail(detail: dict[str, Any], link: str, *, full_tracebacks: bool = False) -> RenderableType:
    """A task for people: the dashboard's permalink, its fields, why it waits, its links, each failed attempt (traceback collapsed to
    its first line and innermost frame unless `full_tracebacks`), its model calls, then its result once."""
    task = detail["task"]
    facts: list[tuple[str, tables.Cell]] = [("dashboard", link)]
    for key, value in task.items():
        if key in _SHOWN_APART or value is None or value == {} or value == []:
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        elif key.endswith("At") and isinstance(value, str):
            value = f"{tables.when(value)} UTC"
        facts.append((key, tables.status(value) if key == "status" else str(value)))
    waiting = task.get("waitingFor")
    if isinstance(waiting, dict):
        facts.append(("waitingFor", tables.styled(str(waiting.get("text") or waiting.get("reason")), "blue")))
    for key, links in (("dependsOn", detail.get("upstream")), ("dependents", detail.get("downstream"))):
        if links:
            facts.append((key, ", ".join(f"{u['id']} ({u.get('taskType')}, {u.get('status')})" for u in links)))
    if detail.get("modelCalls"):
        unpriced = sum(1 for c in detail["modelCalls"] if c.get("costUsd") is None)
        facts.append(("costUsd", f"${detail.get('costUsd') or 0:,.4f}"
                      + (f" (+{unpriced} unpriced call(s))" if unpriced else "")))
    parts: list[Any] = [tables.fields(facts)]
    for a in detail.get("attempts") or []:
        parts.append("")
        parts.append(tables.styled(f"attempt {a.get('attempt')} ({a.get('outcome')}, {tables.when(a.get('failedAt'))}"
                                   f"{', ' + a['workerId'] if a.get('workerId') else ''}): "
                                   f"{error_line(a.get('errorType'), a.get('errorMessage'))}", "red"))
        if a.get("traceback"):
            parts.extend("  " + ln for ln in traceback_lines(str(a["traceback"]), full_tracebacks, task["id"]))
    calls = detail.get("modelCalls") or []
    if calls:
        parts += ["", tables.styled("model calls", "bold"), tables.table(
            ("ATTEMPT", "MODEL", "PROMPT", "COMPLETION", "CACHED", "COST", "DURATION", "AT"),
            [(c.get("attempt"), c.get("model"), f"{c.get('promptTokens') or 0:,}", f"{c.get('completionTokens') or 0:,}",
              f"{c.get('cachedPromptTokens') or 0:,}", "-" if c.get("costUsd") is None else f"${c['costUsd']:,.4f}",
              f"{(c.get('durationMs') or 0) / 1000:.1f}s", tables.when(c.get("at"))) for c in calls],
            right=("ATTEMPT", "PROMPT", "COMPLETION", "CACHED", "COST", "DURATION"))]
    result = task.get("result") if task.get("result") is not None else task.get("resultData")
    if result is not None:
        parts += ["", tables.styled("result", "bold"), json.dumps(result, indent=2, ensure_ascii=False, default=str)]
    return tables.stack(*parts)


def traceback_lines(text: str, full: bool, task_id: str) -> list[str]:
    """A traceback's lines; collapsed (unless `full`) to its first line and its innermost frame, with a line
    saying how many are left out and how to see them."""
    lines = text.rstrip("\n").splitlines()
    if full or len(lines) <= TRACEBACK_HEAD + TRACEBACK_TAIL + 1:
        return lines
    hidden = len(lines) - TRACEBACK_HEAD - TRACEBACK_TAIL
    return [*lines[:TRACEBACK_HEAD], f"  … {hidden} more lines (bgtasks show {task_id} --traceback)",
            *lines[-TRACEBACK_TAIL:]]


def error_line(error_type: str | None, message: str | None) -> str:
    """An attempt's error with its type written once ("RuntimeError: boom", never doubled)."""
    text = message or ""
    if not text or not error_type or text == error_type or text.startswith(f"{error_type}: "):
        return text or (error_type or "")
    return f"{error_type}: {text}"


def _action(args: argparse.Namespace, action: str, body: dict[str, Any] | None = None) -> int:
    client = client_from(args)
    try:
        task = client.request("POST", f"/api/tasks/{args.task_id}/{action}", json=body or {})["task"]
    finally:
        client.close()
    if args.json:
        print_json(task)
    else:
        print(f"{task['id']} {task['status']}")
    return OK


def delete(args: argparse.Namespace) -> int:
    client = client_from(args)
    try:
        deleted = client.request("DELETE", f"/api/tasks/{args.task_id}")["deleted"]
    finally:
        client.close()
    if args.json:
        print_json({"deleted": deleted})
    else:
        print(f"{deleted} deleted")
    return OK


def cancel(args: argparse.Namespace) -> int:
    return _action(args, "cancel", {"reason": args.reason} if args.reason else None)


def retry(args: argparse.Namespace) -> int:
    return _action(args, "retry")
