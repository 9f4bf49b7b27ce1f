"""The HTTP application: the routes table, read top to bottom, and the process-wide resources (pool, hub)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from .. import db
from ..hub import Hub
from ..settings import Settings
from . import events

log = logging.getLogger("bgtasks.api")


async def healthz(request: Request) -> JSONResponse:
    """Liveness and database reachability: 200 when a query answers, 503 (with Retry-After) otherwise."""
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
    except Exception as exc:  # any failure to reach the database is "not healthy", never a 500
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable", "error": type(exc).__name__},
            status_code=503, headers={"Retry-After": "1"},
        )
    return JSONResponse({"status": "ok", "database": "ok"})


def create_app(settings: Settings) -> Starlette:
    assert settings.database_url, "create_app needs settings.database_url"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.pool = await db.create_pool(settings.database_url or "", min_size=1, max_size=10)
        app.state.hub = Hub(settings.database_url or "", app.state.pool, buffer=settings.bgtasks_sse_buffer)
        await app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            await app.state.pool.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/subscribeToTask", events.subscribe_to_task, methods=["GET"]),
        Route("/api/events", events.events, methods=["GET"]),
        WebSocketRoute("/api/ws", events.events_ws),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
