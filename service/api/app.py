"""The HTTP application: the routes table, read top to bottom, and the process-wide resources (pool, hub)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute

from .. import db
from ..catalog import CATALOG
from ..connections import Connections
from ..connections import resolve as resolve_connections
from ..hub import Hub
from ..metrics import metrics
from ..settings import Settings
from ..store import keys
from ..task_modules import load_task_types
from . import (
    budgets,
    dashboard,
    events,
    limits,
    openapi,
    questions,
    queue,
    reference,
    seeds,
    task_stream,
    task_types,
    tasks,
    tokens,
    workers,
    workflows,
)
from .auth import dev_mode_banner
from .content_type import JsonBodyMiddleware
from .errors import EXCEPTION_HANDLERS, BodyLimitMiddleware
from .text_input import NulTextMiddleware

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


ROUTES = [  # the contract of each handler: @operation on it (service/api/contract.py)
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),  # Prometheus (service/metrics.py)
    Route("/api/subscribeToTask", task_stream.subscribe_to_task, methods=["GET"]),
    Route("/api/events", events.events, methods=["GET"]),
    WebSocketRoute("/api/ws", events.events_ws),
    Route("/", dashboard.index, methods=["GET"]),
    Mount("/static", app=dashboard.static_files(), name="static"),
    # The resource API (docs/api.md). Fixed paths before /api/tasks/{task_id}.
    Route("/api/tasks", tasks.list_tasks, methods=["GET"]),
    Route("/api/tasks", tasks.create_task, methods=["POST"]),
    Route("/api/tasks/batch", tasks.create_batch, methods=["POST"]),
    Route("/api/tasks/counts", tasks.task_counts, methods=["GET"]),
    Route("/api/tasks/bulk/{action}", tasks.bulk_action, methods=["POST"]),
    Route("/api/tasks/{task_id}", tasks.get_task, methods=["GET"]),
    Route("/api/tasks/{task_id}", tasks.patch_task, methods=["PATCH"]),
    Route("/api/tasks/{task_id}", tasks.delete_task, methods=["DELETE"]),
    Route("/api/tasks/{task_id}/cancel", tasks.cancel_task, methods=["POST"]),
    Route("/api/tasks/{task_id}/retry", tasks.retry_task, methods=["POST"]),
    Route("/api/tokens", tokens.create_token, methods=["POST"]),  # read tokens for browsers
    Route("/api/questions", questions.list_questions, methods=["GET"]),  # quiz questions (seed two's)
    Route("/api/questions/{question_id}", questions.get_question, methods=["GET"]),
    Route("/api/questions/{question_id}", questions.delete_question, methods=["DELETE"]),
    Route("/api/me", tasks.me, methods=["GET"]),
    Route("/api/task-types", task_types.list_task_types, methods=["GET"]),
    Route("/api/usage", tasks.usage, methods=["GET"]),
    Route("/api/queue", queue.get_queue, methods=["GET"]),
    Route("/api/queue", queue.patch_queue, methods=["PATCH"]),
    Route("/api/queue/start", queue.start_queue, methods=["POST"]),
    Route("/api/queue/stop", queue.stop_queue, methods=["POST"]),
    Route("/api/schedules", workflows.list_schedules, methods=["GET"]),
    Route("/api/schedules", workflows.create_schedule, methods=["POST"]),
    Route("/api/schedules/{name}", workflows.get_schedule, methods=["GET"]),
    Route("/api/schedules/{name}", workflows.patch_schedule, methods=["PATCH"]),
    Route("/api/schedules/{name}", workflows.delete_schedule, methods=["DELETE"]),
    Route("/api/schedules/{name}/run", workflows.run_schedule, methods=["POST"]),
    Route("/api/workers", workers.list_workers, methods=["GET"]),
    Route("/api/analytics", workflows.analytics, methods=["GET"]),
    Route("/api/provider-budgets", budgets.list_budgets, methods=["GET"]),
    Route("/api/provider-budgets", budgets.put_budget, methods=["PUT"]),
    Route("/api/provider-budgets", budgets.delete_budget, methods=["DELETE"]),
    Route("/api/limits", limits.list_limits, methods=["GET"]),
    Route("/api/limits/{user_id}", limits.get_limits, methods=["GET"]),
    Route("/api/limits/{user_id}", limits.put_limits, methods=["PUT"]),
    Route("/api/limits/{user_id}", limits.delete_limits, methods=["DELETE"]),
    # Seed one (docs/seeds.md).
    Route("/api/kiro/background-tasks", seeds.kiro_list, methods=["GET"]),
    Route("/api/kiro/background-tasks", seeds.kiro_create, methods=["POST"]),
    Route("/api/kiro/background-tasks", seeds.kiro_update, methods=["PUT"]),
    Route("/api/kiro/background-tasks", seeds.kiro_delete, methods=["DELETE"]),
    Route("/api/kiro/background-tasks/queue", seeds.kiro_queue_status, methods=["GET"]),
    Route("/api/kiro/background-tasks/queue", seeds.kiro_queue_action, methods=["POST"]),
    # Seed two (its SSE endpoint, /api/subscribeToTask, is above).
    Route("/api/generateAIQuestions", seeds.generate_ai_questions, methods=["POST"]),
    Route("/api/getBackgroundTasks", seeds.get_background_tasks, methods=["GET"]),
    Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
    Route("/docs", reference.page, methods=["GET"]),  # the API reference (no credential, like the above)
    Mount("/docs/assets", routes=[Route("/{name}", reference.asset, methods=["GET"])]),  # Swagger UI's files
]


def create_app(
    settings: Settings, connections: Connections | None = None, *, clock: Callable[[], float] = time.time
) -> Starlette:
    """The application; `connections` as resolved by `bgtasks api` (else resolved at startup); `clock` (epoch
    seconds) decides read token expiry (tests move it instead of waiting)."""
    assert settings.database_url, "create_app needs settings.database_url"
    load_task_types(settings)  # the API validates from what workers publish; local types fill in meanwhile

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        if banner := dev_mode_banner(settings):
            log.warning(banner)
        app.state.clock = clock
        conns = connections if connections is not None else await asyncio.to_thread(resolve_connections, settings)
        app.state.pool = await db.create_pool(conns.url, min_size=1, max_size=10, prepare=conns.prepare,
                                              name="bgtasks api")
        await CATALOG.refresh(app.state.pool)
        secret = settings.bgtasks_token_secret
        app.state.token_secret = secret.encode() if secret else await keys.read_token_secret(app.state.pool)
        # The hub LISTENs: on the direct URL (a transaction pooler would lose its LISTEN).
        app.state.hub = Hub(
            conns.direct, app.state.pool, buffer=settings.bgtasks_sse_buffer,
            buffer_bytes=settings.bgtasks_sse_buffer_bytes, inline_bytes=settings.bgtasks_stream_inline_bytes,
            max_streams=settings.bgtasks_max_streams_per_user, recheck_interval=settings.bgtasks_stream_recheck_s,
            clock=clock, measure=events.event_size,
        )
        await app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            await app.state.pool.close()

    middleware = [Middleware(NulTextMiddleware),
                  Middleware(BodyLimitMiddleware, max_bytes=settings.bgtasks_max_body_bytes),
                  Middleware(JsonBodyMiddleware)]
    return Starlette(routes=ROUTES, lifespan=lifespan, middleware=middleware,
                     exception_handlers=EXCEPTION_HANDLERS)
