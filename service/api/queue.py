"""The queue's settings over HTTP: read them (any user), start, stop and tune them (superusers only).
Workers read task_queue_settings at every claim, so a change takes effect at once everywhere."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import Forbidden
from ..store import queue as store
from . import validation as v
from .auth import Principal, authenticate
from .serialize import ok, queue_json
from .tasks import counts_for, pool


def require_superuser(principal: Principal) -> None:
    if not principal.is_superuser:
        raise Forbidden("queue: only a superuser may change the queue settings")


async def queue_state(request: Request, principal: Principal) -> dict[str, object]:
    row = await store.get_queue_settings(pool(request))
    counts = await counts_for(request, principal, principal.owner, True)
    return {"queueSettings": queue_json(row), "taskCounts": counts}


async def set_active(request: Request, active: bool, principal: Principal | None = None) -> JSONResponse:
    principal = principal or await authenticate(request)
    require_superuser(principal)
    row = await store.update_queue_settings(pool(request), is_active=active)
    return ok({"message": f"queue {'started' if active else 'stopped'}", "queueSettings": queue_json(row)})


async def get_queue(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    return ok(await queue_state(request, principal))


async def patch_queue(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    require_superuser(principal)
    body = await v.read_json_object(request)
    v.only_fields(body, {"isActive", "pollInterval", "maxConcurrentTasks", "retryBaseDelayMs", "retryMaxDelayMs"})
    changes: dict[str, object] = {
        "is_active": v.get_bool(body, "isActive"),
        "poll_interval": v.get_int(body, "pollInterval", 10, 3_600_000),
        "retry_base_delay_ms": v.get_int(body, "retryBaseDelayMs", 0, 86_400_000),
        "retry_max_delay_ms": v.get_int(body, "retryMaxDelayMs", 0, 86_400_000),
    }
    if "maxConcurrentTasks" in body:  # null: no global limit
        changes["max_concurrent_tasks"] = v.get_int(body, "maxConcurrentTasks", 0, 1_000_000)
    row = await store.update_queue_settings(pool(request), **changes)  # type: ignore[arg-type]
    return ok({"queueSettings": queue_json(row)})


async def start_queue(request: Request) -> JSONResponse:
    return await set_active(request, True)


async def stop_queue(request: Request) -> JSONResponse:
    return await set_active(request, False)
