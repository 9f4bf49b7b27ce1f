"""Task commands over the HTTP API of a running service: `submit`, `ls`, `show`, `cancel`, `retry`.
They need no database access, only BGTASKS_URL (and BGTASKS_API_KEY outside development mode)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..client import OK, USAGE, CliError, add_client_arguments, client_from, command, print_json
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

    p = sub.add_parser("show", help="one task in full")
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--json", action="store_true")
    add_client_arguments(p)
    p.set_defaults(func=command(show))

    for name, verb in (("cancel", "cancel a pending or processing task (exit 4 if it has finished)"),
                       ("retry", "run an error or cancelled task again (exit 4 otherwise)")):
        p = sub.add_parser(name, help=verb)
        p.add_argument("task_id", metavar="ID")
        if name == "cancel":
            p.add_argument("--reason", help="why (stored as cancel_reason)")
        p.add_argument("--json", action="store_true")
        add_client_arguments(p)
        p.set_defaults(func=command(cancel if name == "cancel" else retry))


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
                       ("label", args.label), ("description", args.description)):
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
    client = client_from(args)
    try:
        tasks = client.request("GET", "/api/tasks", params=params)["tasks"]
    finally:
        client.close()
    if args.json:
        print_json(tasks)
        return OK
    print(_table(tasks))
    return OK


def _table(tasks: list[dict[str, Any]]) -> str:
    head = ("ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "LABEL / ERROR / WAITING FOR")
    rows = [head]
    for t in tasks:
        note = t.get("errorMessage") if t.get("status") in ("error", "cancelled") else None
        if t.get("status") == "pending" and isinstance(t.get("waitingFor"), dict):
            note = t["waitingFor"].get("text")
        rows.append((t["id"], t["taskType"], t["status"], f"{t.get('progress') or 0}%",
                     (t.get("createdAt") or "")[:19].replace("T", " "),
                     _clip(str(note or t.get("label") or t.get("description") or ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    if not tasks:
        lines.append("(no tasks)")
    return "\n".join(line.rstrip() for line in lines)


def _clip(text: str, width: int = 90) -> str:
    """One line of at most `width` characters, cut at a word with an ellipsis (never mid-word)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


def show(args: argparse.Namespace) -> int:
    client = client_from(args)
    try:
        detail = client.request("GET", f"/api/tasks/{args.task_id}")
    finally:
        client.close()
    task = detail["task"]
    if args.json:
        print_json(task)
        return OK
    print(_detail(detail, client.task_link(task["id"])))
    return OK


def _detail(detail: dict[str, Any], link: str) -> str:
    """A task for people: its fields, why it waits, its links (the dashboard's permalink first), then each
    failed attempt with its traceback."""
    task = dict(detail["task"])
    waiting = task.pop("waitingFor", None)
    width = max(len(k) for k in task)
    lines = [f"{'dashboard'.ljust(width)}  {link}"]
    for key, value in task.items():
        if value is None or value == {} or value == []:
            continue
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else value
        lines.append(f"{key.ljust(width)}  {shown}")
    if isinstance(waiting, dict):
        lines.append(f"{'waitingFor'.ljust(width)}  {waiting.get('text') or waiting.get('reason')}")
    for a in detail.get("attempts") or []:
        lines.append("")
        lines.append(f"attempt {a.get('attempt')} ({a.get('outcome')}, {a.get('failedAt') or ''}): "
                     f"{error_line(a.get('errorType'), a.get('errorMessage'))}")
        if a.get("traceback"):
            lines.extend("  " + ln for ln in str(a["traceback"]).splitlines())
    return "\n".join(lines)


def error_line(error_type: str | None, message: str | None) -> str:
    """An attempt's error with its type written once ("RuntimeError: boom", never doubled)."""
    text = message or ""
    if not error_type or text == error_type or text.startswith(f"{error_type}: "):
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


def cancel(args: argparse.Namespace) -> int:
    return _action(args, "cancel", {"reason": args.reason} if args.reason else None)


def retry(args: argparse.Namespace) -> int:
    return _action(args, "retry")
