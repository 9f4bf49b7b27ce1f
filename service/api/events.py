"""Live updates over HTTP: seed two's `GET /api/subscribeToTask` (SSE, one task), `GET /api/events` (SSE,
every task the caller may see) and `GET /api/ws` (WebSocket, the same events). All read the process's hub.

A change reaches many subscribers at once, so everything built from it (the JSON, the SSE frame bytes) is
built once on the shared `Event` and each subscriber's writer only writes bytes: one write per batch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import BgtasksError, TaskNotFound
from ..hub import RESUME_OVERLAP, Event, Holder, Hub, Subscriber, TaskFilter, TooManyStreams, output_event
from ..states import Status, parse_status
from ..store import events as store
from .auth import Principal, authenticate_reader
from .errors import BadRequest, error_response
from .serialize import task_json

log = logging.getLogger("bgtasks.api")

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
        return await authenticate_reader(conn)  # a key, a read token (?token=), a proxy's user or dev mode
    except BgtasksError as exc:
        return error_response(exc)


def _holder(principal: Principal) -> Holder:
    expires = principal.token.expires_at if principal.token is not None else None
    return Holder(principal.user_id, principal.key_id, expires)


async def _subscribe(conn: HTTPConnection, principal: Principal, flt: TaskFilter) -> Subscriber:
    """A hub subscriber held by `principal`, under their stream cap (user_limits.max_streams, else the
    setting): TooManyStreams (429) beyond it."""
    hub: Hub = conn.app.state.hub
    cap = await store.user_stream_cap(conn.app.state.pool, principal.user_id)
    return hub.subscribe(flt, _holder(principal), cap=cap)


# Why a stream ended, for the client: codes after which reconnecting with the same credential cannot help.
CREDENTIAL_ENDS = ("revoked", "expired")


# ---------------------------------------------------------------- SSE transport

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",  # nginx: do not buffer
    "connection": "keep-alive",
}


Write = Callable[[bytes], Awaitable[None]]


class EventStreamResponse(Response):
    """Runs `produce(write)`, which writes the stream's bytes; stops the moment the client goes away (it
    watches http.disconnect itself rather than waiting for a write to fail), then calls `on_close` once."""

    def __init__(
        self, produce: Callable[[Write], Coroutine[Any, Any, None]], on_close: Callable[[], None],
        last_words: Callable[[str], bytes],
    ) -> None:
        self.produce = produce
        self.on_close = on_close
        self.last_words = last_words  # the final message when the stream fails: says why
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = False

        async def write(body: bytes) -> None:
            await send({"type": "http.response.body", "body": body, "more_body": True})

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
            await _until_first_ends(self._guarded(write, scope), watch())
            if not disconnected:
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.on_close()


    async def _guarded(self, write: Write, scope: Scope) -> None:
        """The stream; an error inside it (a bug, the database lost mid-replay) is logged and ends the stream
        with a last message that says why, never silently."""
        try:
            await self.produce(write)
        except OSError:
            raise  # the client went away: nobody to tell
        except Exception:
            log.exception("stream %s ended by a server error", scope.get("path"))
            with contextlib.suppress(Exception):
                await write(self.last_words(STREAM_FAILED))


STREAM_FAILED = "server error (logged); reconnect to continue"


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


def _sse(data: str, *, event: str | None = None, id: int | None = None) -> bytes:
    head = (f"event: {event}\n" if event else "") + (f"id: {id}\n" if id is not None else "")
    return (head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode()


KEEPALIVE = b": keepalive\n\n"
BIGINT_MAX = 2**63 - 1  # change numbers are bigint
RETRY = b"retry: 2000\n\n"  # EventSource's reconnect delay, sent first on /api/events


# ---------------------------------------------------------------- seed two: one task


def _seed_frame(ev: Event, id: int) -> tuple[bytes, bool]:
    """Seed two's SSE message for a change with this id (built once per event and id: every follower of the
    task shares the bytes), and whether it ends the stream."""

    def build(e: Event) -> tuple[bytes, bool]:
        message, done = _seed_message(e)
        return _sse(_dumps(message), id=id), done

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
    principal = await _principal_or_error(request)
    if isinstance(principal, JSONResponse):
        return principal
    task_id = request.query_params.get("taskId", "").strip()
    if not task_id:
        return error_response(BadRequest("taskId", "required"))
    if not principal.may_read(task_id):
        return error_response(TaskNotFound(task_id))  # a read token for other tasks
    owner = principal.owner
    try:  # subscribed before the read: nothing falls between
        sub = await _subscribe(request, principal, TaskFilter(task_id=task_id, user_id=owner))
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
        lambda why: _sse(_dumps({"type": "interrupted", "error": f"stream ended: {why}"})),
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
            await write(_sse(_dumps({"type": "timeout", "error": "Task monitoring timeout"}), id=seq))
            return
        batch = await sub.next_batch(min(keepalive_s, remaining))
        if sub.closed:
            if sub.closed_code in CREDENTIAL_ENDS:  # seed two's clients close their EventSource on `error`
                await write(_sse(_dumps({"type": "error", "error": sub.closed_reason}), id=seq))
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
        user = principal.owner  # a user only ever sees their own tasks, whatever userId says
    task_ids = principal.token.task_ids if principal.token is not None else None
    named = frozenset(split("taskId"))
    if named:  # one task's (or a few tasks') stream: within what a read token allows
        task_ids = named if task_ids is None else named & task_ids
    return TaskFilter(
        user_id=user,
        statuses=statuses,
        task_types=types,
        project_id=q.get("projectId") or None,
        task_ids=task_ids,
        # Every user may read the queue settings (GET /api/queue), so every general stream carries them: a
        # user's dashboard shows a stopped queue as it happens.
        queue=not named,
    )


def _last_event_id(conn: HTTPConnection) -> int | None:
    raw = conn.headers.get("last-event-id") or conn.query_params.get("lastEventId")
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    # ASCII digits only (int() also takes "1_000", "+1" and other scripts' digits), within bigint.
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > BIGINT_MAX:
        raise BadRequest("Last-Event-ID", f"not a change number (0 to {BIGINT_MAX}): {raw[:40]!r}")
    return int(text)


# Columns an all-task stream may send by reference, by their JSON names.
BY_REFERENCE_NAMES = {"payload": "payload", "result_data": "resultData", "result": "result"}


def _event_data(ev: Event) -> Any:
    if ev.row is None:
        return ev.data
    data = task_json(ev.row)
    if ev.by_reference:  # too large to send inline: null here, fetched from `href` by a client that needs it
        data["byReference"] = [BY_REFERENCE_NAMES[c] for c in ev.by_reference]
        data["href"] = f"/api/tasks/{ev.task_id}"
    return data


def _event_json(ev: Event) -> str:
    """The `data` of an all-tasks message (the camelCase task JSON for a change), serialised once per event."""
    return ev.form("json", lambda e: _dumps(_event_data(e)))


def event_size(ev: Event) -> int:
    """What an event costs a subscriber's buffer: its JSON (shared, built once); the hub's `measure`."""
    return len(_event_json(ev))


def _sse_frame(id: int | None, ev: Event) -> bytes:
    """The SSE message for `ev` with this id, built once per (event, id): a live change carries its own change
    number as id on every connection that is up to date, so all of those share the same bytes."""
    return ev.form(("sse", id), lambda e: _sse(_event_json(e), event=e.kind, id=id))


def _ws_text(id: int | None, ev: Event) -> str:
    return ev.form(
        ("ws", id), lambda e: f'{{"event":{_dumps(e.kind)},"id":{_dumps(id)},"data":{_event_json(e)}}}'
    )


Batch = list[tuple[int | None, Event]]  # (the id a message carries, its event), in order


class _Feed:
    """What the all-tasks streams send, in batches: a replay from the table when resuming, `ready`, then what
    the hub delivers. The SSE and WebSocket writers only format the batches. A message's id is the highest
    change number this connection has delivered, so it only grows.

    The live part is `await ready(); take()` rather than an async generator: that is the path every
    subscriber runs on every change, and a generator step would allocate per wake (see `Subscriber`)."""

    def __init__(self, sub: Subscriber, keepalive_s: float, named: bool = False) -> None:
        self.sub = sub
        self.keepalive_s = keepalive_s
        self.named = named  # ?taskId= named the tasks: a fresh connect starts with their current states
        self.high = 0
        self.done = False  # after `dropped`: the stream ends
        self.output_sent: dict[str, int] = {}  # per task, the last chunk of live output the replay sent

    async def replay(self, hub: Hub, pool: Any, last_id: int | None) -> AsyncGenerator[Batch, None]:
        """When resuming, the latest state of every task that changed since `last_id`, page by page; then the
        live output written after `last_id` (on a fresh connect: all of it, so a late subscriber sees the
        text so far); then `ready`, after which everything is live."""
        flt = self.sub.filter
        if last_id is None:
            self.high = await store.max_change_seq(pool)
            if self.named and flt.task_ids:
                rows = await store.tasks_by_ids(pool, sorted(flt.task_ids))
                mine = [r for r in rows if flt.user_id is None or r["user_id"] == flt.user_id]
                if mine:
                    yield [(self.high, hub.stream_event(r)) for r in mine]
        else:
            self.high = last_id
            since = max(0, last_id - RESUME_OVERLAP)
            while True:
                rows = await store.tasks_changed_since(pool, since, flt, limit=hub.resync_page)
                page: Batch = []
                for row in rows:
                    self.high = max(self.high, row["change_seq"])
                    page.append((self.high, hub.stream_event(row)))
                if page:
                    yield page
                if len(rows) < hub.resync_page:
                    break
                since = rows[-1]["change_seq"]
        # Output is not repeated like task states (an overlap would send text twice): exactly what came after.
        since = last_id or 0
        while True:
            chunks = await store.task_output_since(pool, since, flt, limit=hub.resync_page)
            page = []
            for chunk in chunks:
                self.high = max(self.high, chunk["seq"])
                self.output_sent[chunk["id"]] = chunk["seq"]
                page.append((self.high, output_event(chunk)))
            if page:
                yield page
            if len(chunks) < hub.resync_page:
                break
            since = chunks[-1]["seq"]
        yield [(self.high, Event("ready", self.high, data={"lastEventId": self.high}))]
        self.sub.last_seq = max(self.sub.last_seq, self.high)

    def ready(self) -> Awaitable[None]:
        """Resolves when `take()` has something to send (at the latest after the keep-alive interval)."""
        return self.sub.ready(self.keepalive_s)

    def take(self) -> Batch | None:
        """The next live batch; None means "send a keep-alive"; `dropped` ends the stream."""
        events = self.sub.take()
        if self.sub.closed:
            self.done = True
            reason = {"reason": self.sub.closed_reason, "code": self.sub.closed_code, "lastEventId": self.high}
            return [(None, Event("dropped", self.high, data=reason))]
        if not events:
            return None
        batch: Batch = []
        for ev in events:
            if ev.kind == "output" and ev.seq <= self.output_sent.get(ev.task_id or "", 0):
                continue  # written while the replay read it: sent once already
            self.high = max(self.high, ev.seq)
            batch.append((None if ev.kind == "queue" else self.high, ev))
        return batch


def _sse_body(batch: Batch) -> bytes:
    return b"".join([_sse_frame(id, ev) for id, ev in batch])


async def _open_stream(conn: HTTPConnection) -> tuple[Subscriber, int | None] | JSONResponse:
    principal = await _principal_or_error(conn)
    if isinstance(principal, JSONResponse):
        return principal
    try:
        flt = _filter_from(conn, principal)
        last_id = _last_event_id(conn)
        return await _subscribe(conn, principal, flt), last_id
    except (BadRequest, TooManyStreams) as exc:
        return error_response(exc)


async def events(request: Request) -> Response:
    """SSE of every task the caller may see (own; all for a superuser), filtered like the list endpoint:
    `event: task|deleted|queue|ready|dropped`, `id:` = change number, resumable with Last-Event-ID."""
    opened = await _open_stream(request)
    if isinstance(opened, JSONResponse):
        return opened
    sub, last_id = opened
    state = request.app.state
    feed = _Feed(sub, state.settings.bgtasks_sse_keepalive_s, named="taskId" in request.query_params)

    async def produce(write: Write) -> None:
        await write(RETRY)
        async with contextlib.aclosing(feed.replay(state.hub, state.pool, last_id)) as pages:
            async for page in pages:
                await write(_sse_body(page))
        while not feed.done:
            await feed.ready()
            batch = feed.take()
            await write(KEEPALIVE if batch is None else _sse_body(batch))

    def last_words(why: str) -> bytes:
        return _sse(_dumps({"reason": why, "code": "server_error", "lastEventId": feed.high}), event="dropped")

    return EventStreamResponse(produce, sub.close, last_words)


async def events_ws(websocket: WebSocket) -> None:
    """The same events as /api/events over a WebSocket: {"event", "data", "id"} JSON messages."""
    opened = await _open_stream(websocket)
    if isinstance(opened, JSONResponse):
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(opened)  # the same status and JSON body as SSE
        else:
            await websocket.close(code=4000 + opened.status_code)
        return
    sub, last_id = opened
    state = websocket.app.state
    feed = _Feed(sub, state.settings.bgtasks_sse_keepalive_s, named="taskId" in websocket.query_params)
    try:
        await websocket.accept()

        async def send(batch: Batch | None) -> None:
            if batch is None:
                await websocket.send_text('{"event":"keepalive"}')
            for id, ev in batch or ():
                await websocket.send_text(_ws_text(id, ev))

        async def stream() -> None:
            async with contextlib.aclosing(feed.replay(state.hub, state.pool, last_id)) as pages:
                async for page in pages:
                    await send(page)
            while not feed.done:
                await feed.ready()
                await send(feed.take())
            # dropped: 4401 when the credential ended (reconnecting with it cannot help), else 1013 "try
            # again later" (with lastEventId in the message)
            await websocket.close(code=4401 if sub.closed_code in CREDENTIAL_ENDS else 1013)

        async def pump() -> None:
            try:
                await stream()
            except (OSError, WebSocketDisconnect):
                raise
            except Exception:  # logged, and the client told why (as for SSE), never a silent end
                log.exception("stream %s ended by a server error", websocket.url.path)
                with contextlib.suppress(Exception):
                    data = {"reason": STREAM_FAILED, "code": "server_error", "lastEventId": feed.high}
                    await websocket.send_text(_dumps({"event": "dropped", "id": None, "data": data}))
                    await websocket.close(code=1011)

        async def watch() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                # Clients send nothing we need; this waits for the close.
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass

        await _until_first_ends(pump(), watch())
    finally:
        sub.close()
