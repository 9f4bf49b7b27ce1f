"""The workflow API: cron schedules (/api/schedules, /api/schedules/{name}) and analytics (/api/analytics).
Task dependencies are a field of task creation (`dependsOn`, service/store/workflows.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..catalog import CATALOG
from ..errors import Forbidden
from ..store import workflows as store
from . import validation as v
from .auth import Principal, authenticate
from .serialize import ok, task_json

SCHEDULE_CREATE = {"name", "taskType", "payload", "cron", "timezone", "enabled", "catchUp", "priority",
                   "maxRetries", "label", "userId"}
SCHEDULE_PATCH = SCHEDULE_CREATE - {"name", "userId"}
_MAX_PERIOD = timedelta(days=366)
BUCKETS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}
MAX_POINTS = 1500  # a day by the minute fits; a longer period asks for hours


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def _owner(request: Request, principal: Principal) -> str | None:
    """Whose schedule a path names: a user's own; a superuser's pick (`?userId=`), else the one user who has a
    schedule of that name (names are unique per owner)."""
    if not principal.is_superuser:
        return principal.user_id
    return v.q_str(request.query_params, "userId", max_len=200)


def _name(request: Request) -> str:
    """The schedule name from the path, checked like any text input (a NUL byte is a 422, not a 500)."""
    return v.check_text(request.path_params["name"], "name")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def schedule_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"], "taskType": row["task_type"], "payload": row["payload"], "userId": row["user_id"],
        "cron": row["cron"], "timezone": row["timezone"], "enabled": row["enabled"], "catchUp": row["catch_up"],
        "priority": row["priority"], "maxRetries": row["max_retries"], "label": row["label"],
        "nextRunAt": _iso(row["next_run_at"]), "lastRunAt": _iso(row["last_run_at"]),
        "lastError": row["last_error"], "createdAt": _iso(row["created_at"]), "updatedAt": _iso(row["updated_at"]),
    }


def _schedule_fields(body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated keyword arguments for the store from a create or patch body."""
    out: dict[str, Any] = {}
    task_type = None
    if creating or "taskType" in body:
        task_type = v.check_task_type(body.get("taskType"))
        out["task_type"] = task_type.name
    if "payload" in body or creating:
        if task_type is None:
            raise v.fail("payload", "send taskType with payload, so the payload can be checked against it")
        out["payload"] = v.check_payload(task_type, body.get("payload"))
    cron = v.get_str(body, "cron", required=creating, max_len=200)
    if cron is not None:
        out["cron"] = cron
    tz = v.get_str(body, "timezone", max_len=100)
    if tz is not None:
        out["timezone"] = tz
    enabled = v.get_bool(body, "enabled")
    if enabled is not None:
        out["enabled"] = enabled
    catch_up = v.get_str(body, "catchUp", max_len=10)
    if catch_up is not None:
        out["catch_up"] = catch_up
    priority = v.get_int(body, "priority", -1000, 1000)
    if priority is not None:
        out["priority"] = priority
    max_retries = v.get_int(body, "maxRetries", 0, 100)
    if max_retries is not None:
        out["max_retries"] = max_retries
    if "label" in body:
        label = v.get_str(body, "label", max_len=200, allow_empty=True)
        if label:
            out["label"] = label
        elif not creating:
            out["clear_label"] = True
    return out


async def list_schedules(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    rows = await store.list_schedules(_pool(request), principal.owner)
    return ok({"schedules": [schedule_json(r) for r in rows]})


async def create_schedule(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    body = await v.read_json_object(request)
    v.only_fields(body, SCHEDULE_CREATE)
    await CATALOG.ready(_pool(request), [body.get("taskType")])
    name = v.get_str(body, "name", required=True, max_len=100)
    assert name is not None
    owner = v.get_str(body, "userId", max_len=200)
    if owner is not None and not principal.is_superuser:
        if not principal.is_user(owner):  # as for tasks: never silently the caller's own instead
            raise Forbidden("userId: only a superuser may create schedules for another user")
        owner = None
    row = await store.create_schedule(_pool(request), name=name, user_id=owner or principal.user_id,
                                      **_schedule_fields(body, creating=True))
    return ok({"schedule": schedule_json(row)}, status_code=201)


async def get_schedule(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    row = await store.get_schedule(_pool(request), _name(request), _owner(request, principal))
    return ok({"schedule": schedule_json(row)})


async def patch_schedule(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    body = await v.read_json_object(request)
    v.only_fields(body, SCHEDULE_PATCH)
    await CATALOG.ready(_pool(request), [body.get("taskType")])
    row = await store.update_schedule(_pool(request), _name(request), _owner(request, principal),
                                      **_schedule_fields(body, creating=False))
    return ok({"schedule": schedule_json(row)})


async def delete_schedule(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    row = await store.delete_schedule(_pool(request), _name(request), _owner(request, principal))
    return ok({"schedule": schedule_json(row)})


async def run_schedule(request: Request) -> JSONResponse:
    """POST /api/schedules/{name}/run: one task of the schedule now (an empty body, or `{}`), outside its
    cron; 201 with the task. Counts against the owner's creation rate like any task (429 when over)."""
    principal = await authenticate(request)
    raw = await request.body()
    v.only_fields(v.parse_json_object(raw) if raw.strip() else {}, set())
    row = await store.run_schedule_now(_pool(request), _name(request), _owner(request, principal))
    return ok({"task": task_json(row), "schedule": row["schedule_name"]}, status_code=201)


def analytics_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"], "total": row["total"], "pending": row["pending"], "processing": row["processing"],
        "completed": row["completed"], "failed": row["failed"], "cancelled": row["cancelled"],
        "successRate": row["success_rate"],
        "durationSeconds": {"p50": row["duration_p50_s"], "p95": row["duration_p95_s"]},
        "queueWaitSeconds": {"p50": row["queue_wait_p50_s"], "p95": row["queue_wait_p95_s"]},
        "retries": row["retries"],
        "tokens": {"prompt": row["prompt_tokens"], "completion": row["completion_tokens"]},
    }


async def analytics(request: Request) -> JSONResponse:
    """GET /api/analytics?since=&until=&groupBy=user|type&bucket=minute|hour (default: the last 24 hours, per
    type, no series). With `bucket`, `series` counts the tasks that finished in each minute or hour of the
    period (throughput and failures). A superuser sees everyone (or one user with userId=); a user sees their
    own tasks only."""
    principal = await authenticate(request)
    params = request.query_params
    until = v.parse_time(params["until"], "until") if params.get("until") else datetime.now(UTC)
    since = v.parse_time(params["since"], "since") if params.get("since") else until - timedelta(hours=24)
    if since >= until:
        raise v.fail("since", "must be before until")
    if until - since > _MAX_PERIOD:
        raise v.fail("since", "the period is at most 366 days")
    group_by = params.get("groupBy", "type")
    if group_by not in ("user", "type"):
        raise v.fail("groupBy", "must be user or type")
    bucket = params.get("bucket")
    if bucket is not None and bucket not in BUCKETS:
        raise v.fail("bucket", "must be minute or hour")
    if bucket is not None and (until - since) / BUCKETS[bucket] > MAX_POINTS:
        raise v.fail("bucket", f"at most {MAX_POINTS} {bucket}s per request: shorten the period or ask for hours")
    owner = principal.owner if principal.owner is not None else v.q_str(params, "userId", max_len=200)
    rows = await store.task_analytics(_pool(request), since, until, group_by, owner)
    out: dict[str, Any] = {"since": since.isoformat(), "until": until.isoformat(), "groupBy": group_by,
           "groups": [analytics_json(r) for r in rows]}
    if bucket is not None:
        points = await store.task_throughput(_pool(request), since, until, bucket, owner)
        out["series"] = {"bucket": bucket, "points": [
            {"start": _iso(p["start"]), "completed": p["completed"], "failed": p["failed"],
             "cancelled": p["cancelled"]} for p in points]}
    return ok(out)

