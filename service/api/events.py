"""Live updates over HTTP: seed two's `GET /api/subscribeToTask` (SSE, one task), `GET /api/events` (SSE,
every task the caller may see) and `GET /api/ws` (WebSocket, the same events). All read the process's hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import BgtasksError, TaskNotFound
from ..hub import RESUME_OVERLAP, Event, Hub, Subscriber, TaskFilter
from ..states import Status, parse_status
from ..store import events as store
from .auth import Principal, authenticate
from .errors import BadRequest, error_response
from .serialize import task_json


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


async def _principal_or_error(conn: HTTPConnection) -> Principal | JSONResponse:
    # Errors are answered here, before any stream starts, in the shape of every other endpoint.
    try:
        return await authenticate(conn)  # type: ignore[arg-type]  # reads headers and app state only
    except BgtasksError as exc:
        return error_response(exc)


# ---------------------------------------------------------------- SSE transport

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",  # nginx: do not buffer
    "connection": "keep-alive",
}


class EventStreamResponse(Response):
    """Streams `chunks`; stops the moment the client goes away (it watches http.disconnect itself rather
    than waiting for a write to fail), then closes the generator and calls `on_close` exactly once."""

    def __init__(self, chunks: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        self.chunks = chunks
        self.on_close = on_close
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = False

        async def pump() -> None:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})

        async def watch() -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected = True

        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(k.encode(), v.encode()) for k, v in SSE_HEADERS.items()],
                }
            )
            await _until_first_ends(pump(), watch())
            if not disconnected:
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with contextlib.suppress(Exception):
                await self.chunks.aclose()  # type: ignore[attr-defined]
            self.on_close()


async def _until_first_ends(*jobs: Coroutine[Any, Any, None]) -> None:
    """Run the jobs until one ends (the stream ran out, or the client went away), then stop the others."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def _sse(data: str, *, event: str | None = None, id: int | None = None) -> str:
    head = (f"event: {event}\n" if event else "") + (f"id: {id}\n" if id is not None else "")
    return head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"


KEEPALIVE = ": keepalive\n\n"


# ---------------------------------------------------------------- seed two: one task


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
    principal = await _principal_or_error(request)
    if isinstance(principal, JSONResponse):
        return principal
    task_id = request.query_params.get("taskId", "").strip()
    if not task_id:
        return error_response(BadRequest("taskId", "required"))
    hub: Hub = request.app.state.hub
    owner = None if principal.is_superuser else principal.user_id
    sub = hub.subscribe(TaskFilter(task_id=task_id, user_id=owner))  # before the read: nothing falls between
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
    return EventStreamResponse(
        _task_stream(sub, first, settings.bgtasks_sse_timeout_s, settings.bgtasks_sse_keepalive_s), sub.close
    )


async def _task_stream(
    sub: Subscriber, first: Event, timeout_s: float, keepalive_s: float
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    seq = first.seq
    message, done = _seed_message(first)
    yield _sse(_dumps(message), id=seq)
    while not done:
        remaining = deadline - loop.time()
        if remaining <= 0:
            yield _sse(_dumps({"type": "timeout", "error": "Task monitoring timeout"}), id=seq)
            return
        batch = await sub.next_batch(min(keepalive_s, remaining))
        if sub.closed:
            return  # server shutting down: EventSource reconnects and is sent the current state
        if not batch:
            if deadline - loop.time() > 0:
                yield KEEPALIVE
            continue
        for ev in batch:
            if ev.kind == "task" and ev.seq <= seq:
                continue  # the state read at connect was newer
            seq = max(seq, ev.seq)
            message, done = _seed_message(ev)
            yield _sse(_dumps(message), id=seq)
            if done:
                return


# ---------------------------------------------------------------- every task the caller may see


def _filter_from(conn: HTTPConnection, principal: Principal) -> TaskFilter:
    q = conn.query_params

    def split(name: str) -> list[str]:
        return [v.strip() for raw in q.getlist(name) for v in raw.split(",") if v.strip()]

    try:
        statuses = frozenset(parse_status(s).value for s in split("status")) or None
    except ValueError as exc:
        raise BadRequest("status", str(exc)) from None
    types = frozenset(split("type") + split("taskType")) or None
    user = q.get("userId") or None
    if not principal.is_superuser:
        user = principal.user_id  # a user only ever sees their own tasks, whatever userId says
    return TaskFilter(
        user_id=user,
        statuses=statuses,
        task_types=types,
        project_id=q.get("projectId") or None,
        queue=principal.is_superuser,
    )


def _last_event_id(conn: HTTPConnection) -> int | None:
    raw = conn.headers.get("last-event-id") or conn.query_params.get("lastEventId")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("Last-Event-ID", f"not a change number: {raw!r}") from None
    if value < 0:
        raise BadRequest("Last-Event-ID", "must be >= 0")
    return value


def _task_data(ev: Event) -> str:
    row = ev.row
    assert row is not None, "a task event carries its row"
    return str(ev.form("json", lambda _e: _dumps(task_json(row))))


async def _stream_messages(
    hub: Hub,
    pool: Any,
    sub: Subscriber,
    last_id: int | None,
    keepalive_s: float,
) -> AsyncIterator[tuple[str, int | None, str] | None]:
    """(event name, id, JSON text) for the all-tasks streams; None means "send a keep-alive"."""
    flt = sub.filter
    if last_id is None:
        high = await store.max_change_seq(pool)
        yield "ready", high, _dumps({"lastEventId": high})
    else:
        high = last_id
        since = max(0, last_id - RESUME_OVERLAP)
        while True:
            rows = await store.tasks_changed_since(
                pool,
                since,
                user_id=flt.user_id,
                statuses=sorted(flt.statuses) if flt.statuses else None,
                task_types=sorted(flt.task_types) if flt.task_types else None,
                project_id=flt.project_id,
                limit=hub.resync_page,
            )
            for row in rows:
                high = max(high, row["change_seq"])
                yield "task", high, _task_data(Event("task", row["change_seq"], row["id"], row=row))
            if len(rows) < hub.resync_page:
                break
            since = rows[-1]["change_seq"]
        yield "ready", high, _dumps({"lastEventId": high})
    sub.last_seq = max(sub.last_seq, high)
    while True:
        batch = await sub.next_batch(keepalive_s)
        if sub.closed:
            yield "dropped", None, _dumps({"reason": sub.closed_reason, "lastEventId": high})
            return
        if not batch:
            yield None
            continue
        for ev in batch:
            high = max(high, ev.seq)
            if ev.kind == "task":
                yield "task", high, _task_data(ev)
            elif ev.kind == "deleted":
                yield "deleted", high, _dumps(ev.data)
            else:
                yield ev.kind, None, _dumps(ev.data)


async def _open_stream(conn: HTTPConnection) -> tuple[Subscriber, int | None] | JSONResponse:
    principal = await _principal_or_error(conn)
    if isinstance(principal, JSONResponse):
        return principal
    try:
        flt = _filter_from(conn, principal)
        last_id = _last_event_id(conn)
    except BadRequest as exc:
        return error_response(exc)
    return conn.app.state.hub.subscribe(flt), last_id


async def events(request: Request) -> Response:
    """SSE of every task the caller may see (own; all for a superuser), filtered like the list endpoint:
    `event: task|deleted|queue|ready|dropped`, `id:` = change number, resumable with Last-Event-ID."""
    opened = await _open_stream(request)
    if isinstance(opened, JSONResponse):
        return opened
    sub, last_id = opened
    app = request.app

    async def chunks() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for msg in _stream_messages(
            app.state.hub, app.state.pool, sub, last_id, app.state.settings.bgtasks_sse_keepalive_s
        ):
            yield KEEPALIVE if msg is None else _sse(msg[2], event=msg[0], id=msg[1])

    return EventStreamResponse(chunks(), sub.close)


async def events_ws(websocket: WebSocket) -> None:
    """The same events as /api/events over a WebSocket: {"event", "data", "id"} JSON messages."""
    opened = await _open_stream(websocket)
    if isinstance(opened, JSONResponse):
        await websocket.close(code=4401 if opened.status_code == 401 else 4400)
        return
    sub, last_id = opened
    app = websocket.app
    try:
        await websocket.accept()

        async def pump() -> None:
            async for msg in _stream_messages(
                app.state.hub, app.state.pool, sub, last_id, app.state.settings.bgtasks_sse_keepalive_s
            ):
                if msg is None:
                    await websocket.send_text('{"event":"keepalive"}')
                else:
                    name, seq, data = msg
                    await websocket.send_text(f'{{"event":{_dumps(name)},"id":{_dumps(seq)},"data":{data}}}')
            await websocket.close(code=1013)  # dropped: "try again later", with lastEventId in the message

        async def watch() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                # Clients send nothing we need; this waits for the close.
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass

        await _until_first_ends(pump(), watch())
    finally:
        sub.close()
