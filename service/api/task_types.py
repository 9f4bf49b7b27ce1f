"""GET /api/task-types: the types workers published (schemas, limits, how many live workers serve each), and
those only this process defines (not published yet: no worker has started with them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..actors import TaskType
from ..catalog import CATALOG
from . import replies as r
from .auth import authenticate
from .contract import operation
from .serialize import iso, ok


def task_type_json(t: TaskType, row: Any | None, *, superuser: bool) -> dict[str, Any]:
    """A superuser also sees which workers serve the type (their ids name hosts and pids); a user, how many."""
    found = {
        "name": t.name, "description": t.description, "payloadSchema": t.payload_schema,
        "resultSchema": t.result_schema, "maxRetries": t.max_retries, "timeLimitS": t.time_limit_s,
        "needsProject": t.needs_project, "diagnostic": t.diagnostic, "published": row is not None,
        "liveWorkers": int(row["live_workers"]) if row is not None else 0,
        "workers": list(row["live_worker_ids"]) if row is not None else [],
        "publishedBy": row["published_by"] if row is not None else None,
        "publishedAt": iso(row["published_at"]) if row is not None else None,
    }
    if not superuser:
        del found["workers"], found["publishedBy"]
    return found



class TaskTypeInfo(r.Reply):
    name: str
    description: str | None = None
    payload_schema: dict[str, Any] | None = None
    result_schema: dict[str, Any] | None = None
    max_retries: int | None = None
    time_limit_s: float | None = None
    needs_project: bool | None = None
    diagnostic: bool | None = None
    published: bool
    live_workers: int
    workers: Annotated[list[str] | None, Field(description="superusers only: the ids of the live workers")] = None
    published_by: Annotated[str | None, Field(description="superusers only")] = None
    published_at: datetime | None = None


class TaskTypes(r.Ok):
    task_types: list[TaskTypeInfo]


@operation("The task types workers published (schemas, limits, live workers), and those only this process "
           "defines", "tasks", TaskTypes)
async def list_task_types(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    rows = {r["name"]: r for r in await CATALOG.refresh(request.app.state.pool)}
    return ok({"taskTypes": [task_type_json(t, rows.get(t.name), superuser=caller.is_superuser)
                             for t in CATALOG.all()]})


