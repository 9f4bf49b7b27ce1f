"""`bgtasks watch ID`: follow a task's live stream with a progress bar until it ends (`--output`: print the
model's text as it is written instead); the exit code says how it ended (0 completed, 1 failed, 4 cancelled;
3 unknown task, 5 service unreachable)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from ..backoff import backoff_delay
from ..client import (
    CANCELLED_EXIT,
    FAILED,
    OK,
    UNREACHABLE,
    USAGE,
    Client,
    CliError,
    add_client_arguments,
    client_from,
    command,
    exit_code_for_status,
)

BAR_WIDTH = 30
RECONNECTS = 5


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("watch", help="follow a task until it ends (exit 0 completed, 1 failed, 4 cancelled)")
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output; only the exit code")
    p.add_argument("--output", action="store_true",
                   help="print the task's live output (the model's text as it is written), then how it ended")
    add_client_arguments(p)
    p.set_defaults(func=command(run))


def run(args: argparse.Namespace) -> int:
    client = client_from(args)
    try:
        out = None if args.quiet else sys.stdout
        if args.output:
            return follow_output(client, args.task_id, out=out)
        return follow(client, args.task_id, out=out)
    finally:
        client.close()


def bar(progress: int, width: int = BAR_WIDTH) -> str:
    done = max(0, min(width, round(progress * width / 100)))
    return "[" + "#" * done + "-" * (width - done) + f"] {progress:3d}%"


class _Painter:
    """One redrawn line on a terminal; one line per change elsewhere (logs, pipes, tests)."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self.tty = bool(out is not None and out.isatty())
        self.last: tuple[Any, ...] | None = None

    def update(self, task: dict[str, Any]) -> None:
        if self.out is None:
            return
        progress = int(task.get("progress") or 0)
        status = str(task.get("status") or "")
        description = task.get("description") or ""
        state = (status, progress, description)
        if state == self.last:
            return
        self.last = state
        line = f"{bar(progress)} {status}{': ' + description if description else ''}"
        if self.tty:
            self.out.write("\r\x1b[2K" + line[:200])
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def end(self, line: str) -> None:
        if self.out is None:
            return
        if self.tty:
            self.out.write("\n")
        self.out.write(line + "\n")
        self.out.flush()


def follow(client: Client, task_id: str, out: TextIO | None = sys.stdout) -> int:
    """Follow /api/subscribeToTask (seed two's stream: update, complete, error, timeout messages) until the
    task ends. A stream that times out or drops is opened again: it starts with the task's current state."""
    painter = _Painter(out)
    failures = 0
    while True:
        try:
            for message in client.events("/api/subscribeToTask", {"taskId": task_id}):
                failures = 0
                kind = message.get("type")
                task = message.get("task") or {}
                if kind == "update":
                    painter.update(task)
                elif kind == "complete":
                    painter.update(task)
                    painter.end(f"{task_id} completed")
                    return OK
                elif kind == "error":
                    if not task:  # the stream's credential ended (key revoked): not the task's failure
                        raise CliError(f"stream of {task_id!r} ended: {message.get('error')}", USAGE)
                    status = task.get("status")
                    if status == "deleted":
                        raise CliError(f"task {task_id!r} was deleted", FAILED)
                    painter.update(task)
                    if status == "cancelled":
                        painter.end(f"{task_id} cancelled: {task.get('cancelReason') or message.get('error')}")
                        return CANCELLED_EXIT
                    painter.end(f"{task_id} failed: {task.get('errorMessage') or message.get('error')}")
                    return FAILED
                # "timeout" (the server's 5-minute limit per stream): reconnect below
        except CliError as exc:
            if exc.exit_code != UNREACHABLE:
                raise
            failures += 1
            if failures > RECONNECTS:
                raise
            time.sleep(backoff_delay(failures, 0.2, 5.0))


def follow_output(client: Client, task_id: str, out: TextIO | None = sys.stdout) -> int:
    """Follow /api/events?taskId= (the task's states and live output, resumed with Last-Event-ID by the
    client): the text so far first, then each new piece as it is written; a retry's text starts on a new line."""
    from ..http_client import ApiError, StreamLost

    attempt: int | None = None
    wrote = False
    try:
        for event in client.api.events(task_id, output=True):
            if event.type == "output":
                if out is None:
                    continue
                if attempt is not None and event.data.get("attempt") != attempt and wrote:
                    out.write(f"\n--- attempt {event.data.get('attempt')} ---\n")
                attempt = event.data.get("attempt")
                out.write(event.text)
                out.flush()
                wrote = True
            elif event.type == "task" and event.task is not None and event.task.finished:
                task = event.task
                if out is not None:
                    out.write(("\n" if wrote else "") + f"{task_id} {task.status}"
                              + (f": {task.error_message}" if task.error_message else "") + "\n")
                    out.flush()
                if task.status == "completed":
                    return OK
                return CANCELLED_EXIT if task.status == "cancelled" else FAILED
            elif event.type == "deleted":
                raise CliError(f"task {task_id!r} was deleted", FAILED)
            elif event.type == "dropped" and event.data.get("code") in ("revoked", "expired"):
                raise CliError(f"stream of {task_id!r} ended: {event.data.get('reason')}", USAGE)
    except ApiError as exc:
        raise CliError(str(exc), exit_code_for_status(exc.status_code)) from None
    except StreamLost as exc:
        raise CliError(str(exc), UNREACHABLE) from None
    raise CliError(f"the stream of {task_id!r} ended before the task did", UNREACHABLE)
