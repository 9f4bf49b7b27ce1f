"""The workers view over HTTP (superusers): GET /api/workers, each worker process with its state (live, silent,
stopped), concurrency, tasks running now, served types and last heartbeat, from bgtasks_workers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import Forbidden
from ..store import workers as store
from . import replies as r
from .auth import authenticate
from .contract import operation
from .fields import QInt, Query
from .serialize import iso, ok
from .tasks import pool


def worker_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "workerId": row["worker_id"], "hostname": row["hostname"], "pid": row["pid"], "state": row["state"],
        "concurrency": row["concurrency"], "running": row["running"], "taskTypes": list(row["task_types"]),
        "startedAt": iso(row["started_at"]), "heartbeatAt": iso(row["heartbeat_at"]),
        "heartbeatAgeSeconds": row["heartbeat_age_s"], "stoppedAt": iso(row["stopped_at"]),
    }


class Worker(r.Reply):
    worker_id: Annotated[str, Field(description="host:pid:nonce, as a task's workerId")]
    hostname: str | None = None
    pid: int | None = None
    state: Annotated[str, r.enum("live", "silent", "stopped", description=(
        "silent: no heartbeat within worker_stale_after() and never stopped (crashed or cut off)"))]
    concurrency: int | None = None
    running: Annotated[int | None, Field(description="tasks processing under it now")] = None
    task_types: Annotated[list[str] | None, Field(description="published types (empty: any type)")] = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    heartbeat_age_seconds: Annotated[float | None, Field(description="by the database's clock")] = None
    stopped_at: datetime | None = None


class Workers(r.Ok):
    workers: list[Worker]
    totals: dict[str, Any]


class WorkersQuery(Query, extra="forbid"):
    stopped_within: Annotated[int, QInt(0, 7 * 86400, 3600, "also workers stopped in the last this many seconds "
                                                             "(default 3600)")] = 3600
    limit: Annotated[int, QInt(1, 1000, 200, "default 200")] = 200


@operation("Superusers: worker processes (live, silent, stopped recently) with concurrency, tasks running now, "
           "served types and last heartbeat", "queue", Workers, query=WorkersQuery)
async def list_workers(request: Request) -> JSONResponse:
    """GET /api/workers?stoppedWithin=3600&limit=200: workers not stopped, and those stopped in the last
    `stoppedWithin` seconds (0..604800); live first."""
    principal = await authenticate(request)
    if not principal.is_superuser:
        raise Forbidden("workers: only a superuser may list the worker processes")
    query = WorkersQuery.read(request.query_params)
    rows = await store.list_workers(pool(request), query.stopped_within, query.limit)
    workers = [worker_json(r) for r in rows]
    totals = {state: sum(1 for w in workers if w["state"] == state) for state in ("live", "silent", "stopped")}
    capacity = sum(w["concurrency"] for w in workers if w["state"] == "live")
    return ok({"workers": workers, "totals": {**totals, "liveCapacity": capacity,
                                              "running": sum(w["running"] for w in workers)}})
