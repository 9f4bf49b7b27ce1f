"""What every live stream shares (seed two's /api/subscribeToTask, /api/events, /api/ws): the caller's credential
checked before the stream starts, a hub subscriber held under their stream cap, JSON for the wire, and the SSE
transport (EventStreamResponse: one write per batch, a last word when the stream ends)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..errors import BgtasksError
from ..hub import Holder, Hub, Subscriber, TaskFilter
from ..store import events as store
from .auth import Principal, authenticate_reader
from .errors import error_response

log = logging.getLogger("bgtasks.api")

def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


async def principal_or_error(conn: HTTPConnection) -> Principal | JSONResponse:
    # Errors are answered here, before any stream starts, in the shape of every other endpoint.
    try:
        return await authenticate_reader(conn)  # a key, a read token (?token=), a proxy's user or dev mode
    except BgtasksError as exc:
        return error_response(exc)


def _holder(principal: Principal) -> Holder:
    expires = principal.token.expires_at if principal.token is not None else None
    return Holder(principal.user_id, principal.key_id, expires)


async def open_subscriber(conn: HTTPConnection, principal: Principal, flt: TaskFilter) -> Subscriber:
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
            await until_first_ends(self._guarded(write, scope), watch())
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


async def until_first_ends(*jobs: Coroutine[Any, Any, None]) -> None:
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


def sse_message(data: str, *, event: str | None = None, id: int | None = None) -> bytes:
    head = (f"event: {event}\n" if event else "") + (f"id: {id}\n" if id is not None else "")
    return (head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode()


KEEPALIVE = b": keepalive\n\n"
BIGINT_MAX = 2**63 - 1  # change numbers are bigint
RETRY = b"retry: 2000\n\n"  # EventSource's reconnect delay, sent first on /api/events
