"""Built-in task types with no model: `noop` (benchmarks), `sleep` (long work with progress, for trying
cancellation and limits), `flaky` (fails its first N attempts: retries and backoff), `add` (chains: adds to
its upstream results). With BGTASKS_TEST_JOURNAL set, each run appends start/end lines to that file so tests
can count executions."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from bgtasks.errors import PermanentTaskError
from bgtasks.task_context import TaskContext


def _journal(task: TaskContext, event: str, **extra: Any) -> None:
    path = os.environ.get("BGTASKS_TEST_JOURNAL")
    if not path:
        return
    line = json.dumps({"event": event, "task": task.id, "attempt": task.attempt, "pid": os.getpid(),
                       "t": time.time(), **extra}) + "\n"
    # One small O_APPEND write per line: lines from several processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def noop(task: TaskContext) -> None:
    _journal(task, "start")
    _journal(task, "end")


async def sleep(task: TaskContext) -> dict[str, Any]:
    seconds = float(task.payload.get("seconds", 1.0))
    steps = int(task.payload.get("steps", max(1, min(20, int(seconds * 4)))))
    _journal(task, "start")
    try:
        for i in range(steps):
            await asyncio.sleep(seconds / steps)
            await task.progress(int((i + 1) * 100 / steps) if i + 1 < steps else 99,
                                f"slept {seconds * (i + 1) / steps:.2f}s of {seconds:g}s")
    except BaseException as exc:
        _journal(task, "end", error=type(exc).__name__)
        raise
    _journal(task, "end")
    return {"slept": seconds}


def flaky(task: TaskContext) -> dict[str, Any]:
    failures = int(task.payload.get("failures", 1))
    _journal(task, "start")
    if task.retry_count < failures:
        _journal(task, "end", error="planned")
        message = task.payload.get("message") or f"planned failure {task.retry_count + 1} of {failures}"
        if task.payload.get("permanent"):
            raise PermanentTaskError(message)
        raise RuntimeError(message)
    _journal(task, "end")
    return {"attempts": task.retry_count + 1}


def add(task: TaskContext) -> dict[str, Any]:
    """Chains: {"value": the sum of the upstream tasks' values (or payload `start`) + payload `add`}."""
    _journal(task, "start")
    upstream = task.upstream_results()
    values = [r["value"] for r in upstream.values() if isinstance(r, dict) and "value" in r]
    value = (sum(values) if values else task.payload.get("start", 0)) + task.payload.get("add", 0)
    _journal(task, "end", value=value, upstream=sorted(upstream))
    return {"value": value}
