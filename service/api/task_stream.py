"""Seed two's `GET /api/subscribeToTask?taskId=`: one task's stream (update, complete, error, timeout), in the
shape seed two's clients read; ends with the task."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import TaskNotFound
from ..hub import Event, Subscriber, TaskFilter, TooManyStreams
from ..states import Status
from ..store import events as store
from .errors import BadRequest, error_response
from .serialize import task_json
from .streams import (
    CREDENTIAL_ENDS,
    KEEPALIVE,
    EventStreamResponse,
    Write,
    dumps,
    open_subscriber,
    principal_or_error,
    sse_message,
)


def _seed_frame(ev: Event, id: int) -> tuple[bytes, bool]:
    """Seed two's SSE message for a change with this id (built once per event and id: every follower of the
    task shares the bytes), and whether it ends the stream."""

    def build(e: Event) -> tuple[bytes, bool]:
        message, done = _seed_message(e)
        return sse_message(dumps(message), id=id), done

    return ev.form(("seed_two_sse", id), build)


def _seed_message(ev: Event) -> tuple[dict[str, Any], bool]:
    """Seed two's message for a change, and whether it ends the stream."""
    if ev.kind == "deleted":
        return {
            "type": "error",
            "error": "task deleted",
            "task": {"id": ev.task_id, "status": "deleted"},
        }, True
    row = ev.row
    assert row is not None, "a task event carries its row"
    task = ev.form("seed_two", lambda _e: task_json(row, seed_two=True))
    status = str(row["status"])
    if status == Status.COMPLETED:
        return {"type": "complete", "task": task}, True
    if status == Status.ERROR:
        return {"type": "error", "error": row["error_message"] or "task failed", "task": task}, True
    if status == Status.CANCELLED:
        reason = row["cancel_reason"] or "cancelled"
        return {"type": "error", "error": f"cancelled: {reason}", "task": task}, True
    return {"type": "update", "task": task}, False


async def subscribe_to_task(request: Request) -> Response:
    """Seed two: `data:` messages of type update / complete / error / timeout for one task; the current
    state at once; closed after the terminal message. Another user's task is a 404, like a missing one."""
    principal = await principal_or_error(request)
    if isinstance(principal, JSONResponse):
        return principal
    task_id = request.query_params.get("taskId", "").strip()
    if not task_id:
        return error_response(BadRequest("taskId", "required"))
    if not principal.may_read(task_id):
        return error_response(TaskNotFound(task_id))  # a read token for other tasks
    owner = principal.owner
    try:  # subscribed before the read: nothing falls between
        sub = await open_subscriber(request, principal, TaskFilter(task_id=task_id, user_id=owner))
    except TooManyStreams as exc:
        return error_response(exc)
    try:
        rows = await store.tasks_by_ids(request.app.state.pool, [task_id])
    except BaseException:
        sub.close()
        raise
    if not rows or (owner is not None and rows[0]["user_id"] != owner):
        sub.close()
        return error_response(TaskNotFound(task_id))
    settings = request.app.state.settings
    first = Event("task", rows[0]["change_seq"], task_id, row=rows[0])
    timeout_s, keepalive_s = settings.bgtasks_sse_timeout_s, settings.bgtasks_sse_keepalive_s
    return EventStreamResponse(
        lambda write: _task_stream(write, sub, first, timeout_s, keepalive_s), sub.close,
        # Not seed two's `error` (that says the task failed): EventSource reconnects after the stream ends
        # and is sent the task's current state.
        lambda why: sse_message(dumps({"type": "interrupted", "error": f"stream ended: {why}"})),
    )


async def _task_stream(
    write: Write, sub: Subscriber, first: Event, timeout_s: float, keepalive_s: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    seq = first.seq
    frame, done = _seed_frame(first, seq)
    await write(frame)
    while not done:
        remaining = deadline - loop.time()
        if remaining <= 0:
            await write(sse_message(dumps({"type": "timeout", "error": "Task monitoring timeout"}), id=seq))
            return
        batch = await sub.next_batch(min(keepalive_s, remaining))
        if sub.closed:
            if sub.closed_code in CREDENTIAL_ENDS:  # seed two's clients close their EventSource on `error`
                await write(sse_message(dumps({"type": "error", "error": sub.closed_reason}), id=seq))
            return  # else the server is shutting down: EventSource reconnects and is sent the current state
        if not batch:
            if deadline - loop.time() > 0:
                await write(KEEPALIVE)
            continue
        frames = []
        for ev in batch:
            if ev.kind == "task" and ev.seq <= seq:
                continue  # the state read at connect was newer
            seq = max(seq, ev.seq)
            frame, done = _seed_frame(ev, seq)
            frames.append(frame)
            if done:
                break
        if frames:
            await write(b"".join(frames))
