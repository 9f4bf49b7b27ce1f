"""Live updates over HTTP: seed two's `GET /api/subscribeToTask` (SSE, one task), `GET /api/events` (SSE,
every task the caller may see) and `GET /api/ws` (WebSocket, the same events). All read the process's hub.

A change reaches many subscribers at once, so everything built from it (the JSON, the SSE frame bytes) is
built once on the shared `Event` and each subscriber's writer only writes bytes: one write per batch."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..hub import RESUME_OVERLAP, Event, Hub, Subscriber, TaskFilter, TooManyStreams, output_event
from ..states import parse_status
from ..store import events as store
from .auth import Principal
from .errors import BadRequest, error_response
from .serialize import task_json
from .streams import (
    BIGINT_MAX,
    CREDENTIAL_ENDS,
    KEEPALIVE,
    RETRY,
    STREAM_FAILED,
    EventStreamResponse,
    Write,
    dumps,
    open_subscriber,
    principal_or_error,
    sse_message,
    until_first_ends,
)

log = logging.getLogger("bgtasks.api")

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
    return ev.form("json", lambda e: dumps(_event_data(e)))


def event_size(ev: Event) -> int:
    """What an event costs a subscriber's buffer: its JSON (shared, built once); the hub's `measure`."""
    return len(_event_json(ev))


def _sse_frame(id: int | None, ev: Event) -> bytes:
    """The SSE message for `ev` with this id, built once per (event, id): a live change carries its own change
    number as id on every connection that is up to date, so all of those share the same bytes."""
    return ev.form(("sse", id), lambda e: sse_message(_event_json(e), event=e.kind, id=id))


def _ws_text(id: int | None, ev: Event) -> str:
    return ev.form(
        ("ws", id), lambda e: f'{{"event":{dumps(e.kind)},"id":{dumps(id)},"data":{_event_json(e)}}}'
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
    principal = await principal_or_error(conn)
    if isinstance(principal, JSONResponse):
        return principal
    try:
        flt = _filter_from(conn, principal)
        last_id = _last_event_id(conn)
        return await open_subscriber(conn, principal, flt), last_id
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
        return sse_message(dumps({"reason": why, "code": "server_error", "lastEventId": feed.high}), event="dropped")

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
                    await websocket.send_text(dumps({"event": "dropped", "id": None, "data": data}))
                    await websocket.close(code=1011)

        async def watch() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                # Clients send nothing we need; this waits for the close.
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass

        await until_first_ends(pump(), watch())
    finally:
        sub.close()
