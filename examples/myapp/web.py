"""The application's web side (Starlette): a summary is created in the application's own transaction, together
with the row that records it, and read back through the bgtasks HTTP API.

    DATABASE_URL=postgresql://… BGTASKS_URL=http://127.0.0.1:8000 uvicorn myapp.web:app --port 8080
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import bgtasks

SCHEMA = """
CREATE TABLE IF NOT EXISTS myapp_summaries (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title      text NOT NULL,
    task_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)"""


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=4)
    app.state.tasks = bgtasks.AsyncClient(os.environ.get("BGTASKS_URL", "http://127.0.0.1:8000"),
                                          api_key=os.environ.get("BGTASKS_API_KEY"))
    async with app.state.pool.acquire() as conn:
        await conn.execute(SCHEMA)
    try:
        yield
    finally:
        await app.state.tasks.aclose()
        await app.state.pool.close()


async def create_summary(request: Request) -> JSONResponse:
    """POST {"title", "text"}: the summary's row and its task commit together, or neither exists."""
    body = await request.json()
    try:
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            task_id: str = await bgtasks.enqueue(conn, "summarize", {"text": body.get("text", "")},
                                                 user_id=request.headers.get("x-user", "demo"))
            row_id = await conn.fetchval("INSERT INTO myapp_summaries (title, task_id) VALUES ($1, $2) "
                                         "RETURNING id", str(body.get("title") or "untitled"), task_id)
    except bgtasks.ValidationFailed as exc:
        return JSONResponse({"error": str(exc), "field": exc.field}, status_code=422)
    return JSONResponse({"id": row_id, "taskId": task_id}, status_code=201)


async def get_summary(request: Request) -> JSONResponse:
    """GET /summaries/{task_id}[?wait=seconds]: the task's state, and the summary once it is done."""
    client: bgtasks.AsyncClient = request.app.state.tasks
    task_id = request.path_params["task_id"]
    try:
        wait = float(request.query_params.get("wait", "0"))
        task = await client.wait(task_id, timeout=min(wait, 60)) if wait > 0 else await client.get(task_id)
    except ValueError:
        return JSONResponse({"error": "wait: expected a number of seconds", "field": "wait"}, status_code=400)
    except TimeoutError:
        task = await client.get(task_id)
    except bgtasks.ApiError as exc:
        return JSONResponse(exc.body, status_code=exc.status_code)
    summary = task.result.get("summary") if isinstance(task.result, dict) else None
    return JSONResponse({"taskId": task.id, "status": task.status, "progress": task.progress, "summary": summary})


app = Starlette(routes=[
    Route("/summaries", create_summary, methods=["POST"]),
    Route("/summaries/{task_id}", get_summary, methods=["GET"]),
], lifespan=lifespan)
