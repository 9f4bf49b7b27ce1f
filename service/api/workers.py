"""The workers view over HTTP (superusers): GET /api/workers, each worker process with its state (live, silent,
stopped), concurrency, tasks running now, served types and last heartbeat, from bgtasks_workers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import Forbidden
from ..store import workers as store
from . import validation as v
from .auth import authenticate
from .serialize import iso, ok
from .tasks import pool


def worker_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "workerId": row["worker_id"], "hostname": row["hostname"], "pid": row["pid"], "state": row["state"],
        "concurrency": row["concurrency"], "running": row["running"], "taskTypes": list(row["task_types"]),
        "startedAt": iso(row["started_at"]), "heartbeatAt": iso(row["heartbeat_at"]),
        "heartbeatAgeSeconds": row["heartbeat_age_s"], "stoppedAt": iso(row["stopped_at"]),
    }


async def list_workers(request: Request) -> JSONResponse:
    """GET /api/workers?stoppedWithin=3600&limit=200: workers not stopped, and those stopped in the last
    `stoppedWithin` seconds (0..604800); live first."""
    principal = await authenticate(request)
    if not principal.is_superuser:
        raise Forbidden("workers: only a superuser may list the worker processes")
    params = request.query_params
    v.only_fields(params, {"stoppedWithin", "limit"})
    stopped_within = v.q_int(params, "stoppedWithin", 0, 7 * 86400, 3600)
    rows = await store.list_workers(pool(request), stopped_within, v.q_int(params, "limit", 1, 1000, 200))
    workers = [worker_json(r) for r in rows]
    totals = {state: sum(1 for w in workers if w["state"] == state) for state in ("live", "silent", "stopped")}
    capacity = sum(w["concurrency"] for w in workers if w["state"] == "live")
    return ok({"workers": workers, "totals": {**totals, "liveCapacity": capacity,
                                              "running": sum(w["running"] for w in workers)}})
