"""The queue's settings over HTTP: read them (any user), start, stop and tune them (superusers only).
Workers read task_queue_settings at every claim, so a change takes effect at once everywhere."""

from __future__ import annotations

from typing import Annotated

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import Forbidden
from ..store import queue as store
from .auth import Principal, authenticate
from .contract import operation
from .fields import BOOL, Body, Int, read_body
from .replies import QueueChanged, QueueState
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


class QueuePatch(Body):
    is_active: Annotated[bool | None, BOOL] = None
    poll_interval: Annotated[int | None, Int(10, 3_600_000)] = None
    max_concurrent_tasks: Annotated[int | None, Int(0, 1_000_000, nullable=True,
                                                    description="null: no global limit")] = None
    retry_base_delay_ms: Annotated[int | None, Int(0, 86_400_000)] = None
    retry_max_delay_ms: Annotated[int | None, Int(0, 86_400_000)] = None


@operation("Queue settings and counts", "queue", QueueState)
async def get_queue(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    return ok(await queue_state(request, principal))


@operation("Change queue settings (superusers)", "queue", QueueChanged, body=QueuePatch)
async def patch_queue(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    require_superuser(principal)
    body = await read_body(request, QueuePatch)
    changes: dict[str, object] = {
        "is_active": body.is_active,
        "poll_interval": body.poll_interval,
        "retry_base_delay_ms": body.retry_base_delay_ms,
        "retry_max_delay_ms": body.retry_max_delay_ms,
    }
    if "maxConcurrentTasks" in body.given():  # null: no global limit
        changes["max_concurrent_tasks"] = body.max_concurrent_tasks
    row = await store.update_queue_settings(pool(request), **changes)  # type: ignore[arg-type]
    return ok({"queueSettings": queue_json(row)})


@operation("Start the queue (superusers)", "queue", QueueChanged)
async def start_queue(request: Request) -> JSONResponse:
    return await set_active(request, True)


@operation("Stop the queue (superusers)", "queue", QueueChanged)
async def stop_queue(request: Request) -> JSONResponse:
    return await set_active(request, False)
