"""The workflow API: cron schedules (/api/schedules, /api/schedules/{name}) and analytics (/api/analytics).
Task dependencies are a field of task creation (`dependsOn`, service/store/workflows.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

import asyncpg
from pydantic import Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse

from bgtasks import actors

from .. import schedules
from ..catalog import CATALOG
from ..errors import Forbidden, ValidationFailed
from ..store import workflows as store
from . import replies as r
from . import validation as v
from .auth import Principal, authenticate
from .contract import operation
from .fields import BOOL, Q_TIME, Body, Int, OneOf, Q, QStr, Query, Str, invalid, read_optional_body
from .requests import PAYLOAD, TASK_TYPE, NoBody
from .serialize import ok, task_json

_MAX_PERIOD = timedelta(days=366)
BUCKETS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}
MAX_POINTS = 1500  # a day by the minute fits; a longer period asks for hours


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


class OwnerQuery(Query):
    user_id: Annotated[str | None, QStr(200, "superusers: the owner (names are unique per owner)")] = None


def _owner(request: Request, principal: Principal) -> str | None:
    """Whose schedule a path names: a user's own; a superuser's pick (`?userId=`), else the one user who has a
    schedule of that name (names are unique per owner)."""
    if not principal.is_superuser:
        return principal.user_id
    return OwnerQuery.read(request.query_params).user_id


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


class SchedulePatch(Body):
    """PATCH /api/schedules/{name}: the fields given change; a payload is checked against its task type."""

    creating: ClassVar[bool] = False
    task_type: Annotated[actors.TaskType | None, TASK_TYPE] = None
    payload: Annotated[dict[str, Any] | None, PAYLOAD] = None
    cron: Annotated[str | None, Str(200)] = None
    timezone: Annotated[str | None, Str(100)] = None
    enabled: Annotated[bool | None, BOOL] = None
    catch_up: Annotated[str | None, OneOf(*schedules.CATCH_UP,
                                          message=f"must be one of {', '.join(schedules.CATCH_UP)}")] = None
    priority: Annotated[int | None, Int(-1000, 1000)] = None
    max_retries: Annotated[int | None, Int(0, 100)] = None
    label: Annotated[str | None, Str(200, allow_empty=True, nullable=True, description="empty or null: none")] = None

    @model_validator(mode="after")
    def _payload_fits_its_task_type(self) -> SchedulePatch:
        if "payload" in self.model_fields_set or self.creating:
            if self.task_type is None:
                raise invalid("send taskType with payload, so the payload can be checked against it", "payload")
            try:
                v.check_payload(self.task_type, self.payload)
            except ValidationFailed as exc:
                raise invalid(exc.message, exc.field) from None
        return self

    def fields(self) -> dict[str, Any]:
        """Keyword arguments for the store: what was given (a patch's empty label clears it)."""
        out = {name: getattr(self, name) for name in ("cron", "timezone", "enabled", "catch_up", "priority",
                                                      "max_retries") if getattr(self, name) is not None}
        if self.task_type is not None:
            out["task_type"] = self.task_type.name
        if "payload" in self.model_fields_set or self.creating:
            out["payload"] = self.payload or {}
        if "label" in self.model_fields_set:
            if self.label:
                out["label"] = self.label
            elif not self.creating:
                out["clear_label"] = True
        return out


class ScheduleCreate(SchedulePatch):
    """POST /api/schedules."""

    creating: ClassVar[bool] = True
    name: Annotated[str, Str(100, required=True, pattern=store.SCHEDULE_NAME.pattern[1:-1])]
    task_type: Annotated[actors.TaskType, TASK_TYPE]
    cron: Annotated[str, Str(200, required=True)]
    user_id: Annotated[str | None, Str(200)] = None


NAME = {"name": {"description": "the schedule's name"}}



class Schedule(r.Reply):
    name: str
    task_type: str
    cron: str
    payload: dict[str, Any] | None = None
    user_id: str | None = None
    timezone: str | None = None
    enabled: bool | None = None
    catch_up: Annotated[str | None, r.enum("skip", "once")] = None
    priority: int | None = None
    max_retries: int | None = None
    label: str | None = None
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Schedules(r.Ok):
    schedules: list[Schedule]


class OneSchedule(r.Ok):
    schedule: Schedule


class Analytics(r.Ok):
    since: datetime | None = None
    until: datetime | None = None
    group_by: str | None = None
    groups: list[dict[str, Any]]
    series: Annotated[dict[str, Any] | None, Field(description="with `bucket`: {bucket, points: [{start, "
                                                               "completed, failed, cancelled}]}")] = None


@operation("List schedules (own; superusers: all)", "workflows", Schedules)
async def list_schedules(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    rows = await store.list_schedules(_pool(request), principal.owner)
    return ok({"schedules": [schedule_json(r) for r in rows]})


@operation("Create a cron schedule", "workflows", OneSchedule, status=201, body=ScheduleCreate)
async def create_schedule(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    raw = await v.read_json_object(request)
    await CATALOG.ready(_pool(request), [raw.get("taskType")])
    body = ScheduleCreate.parse(raw)
    name, owner = body.name, body.user_id
    if owner is not None and not principal.is_superuser:
        if not principal.is_user(owner):  # as for tasks: never silently the caller's own instead
            raise Forbidden("userId: only a superuser may create schedules for another user")
        owner = None
    row = await store.create_schedule(_pool(request), name=name, user_id=owner or principal.user_id,
                                      **body.fields())
    return ok({"schedule": schedule_json(row)}, status_code=201)


@operation("Read a schedule", "workflows", OneSchedule, path=NAME, query=OwnerQuery)
async def get_schedule(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    row = await store.get_schedule(_pool(request), _name(request), _owner(request, principal))
    return ok({"schedule": schedule_json(row)})


@operation("Change a schedule", "workflows", OneSchedule, path=NAME, query=OwnerQuery, body=SchedulePatch)
async def patch_schedule(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    raw = await v.read_json_object(request)
    await CATALOG.ready(_pool(request), [raw.get("taskType")])
    body = SchedulePatch.parse(raw)
    row = await store.update_schedule(_pool(request), _name(request), _owner(request, principal),
                                      **body.fields())
    return ok({"schedule": schedule_json(row)})


@operation("Delete a schedule", "workflows", OneSchedule, path=NAME, query=OwnerQuery)
async def delete_schedule(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    row = await store.delete_schedule(_pool(request), _name(request), _owner(request, principal))
    return ok({"schedule": schedule_json(row)})


class ScheduleRun(r.Ok):
    task: r.Task
    schedule: str


@operation("Run a schedule now: one task of it at once, outside its cron (next and last run unchanged); counts "
           "against the creation rate", "workflows", ScheduleRun, status=201, path=NAME, query=OwnerQuery,
           body=NoBody, body_required=False)
async def run_schedule(request: Request) -> JSONResponse:
    """POST /api/schedules/{name}/run: one task of the schedule now (an empty body, or `{}`), outside its
    cron; 201 with the task. Counts against the owner's creation rate like any task (429 when over)."""
    principal = await authenticate(request)
    await read_optional_body(request, NoBody)
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
        # What the period's model calls cost (model_prices), in all and per UTC day: filled from analytics_costs.
        "costUsd": 0.0, "costByDay": [], "unpricedCalls": 0,
    }


class AnalyticsQuery(Query):
    since: Annotated[datetime | None, Q_TIME] = None
    until: Annotated[datetime | None, Q_TIME] = None
    group_by: Annotated[str | None, Q(OneOf("user", "type", message="must be user or type"))] = None
    bucket: Annotated[str | None, Q(OneOf(*BUCKETS, message="must be minute or hour", description=(
        "adds `series`: tasks finished per minute or hour (completed, failed, cancelled)")))] = None
    user_id: Annotated[str | None, QStr(200, "superusers only")] = None


@operation("Counts, success rate, durations, queue wait, retries, tokens and cost (in all and per UTC day) per "
           "user or type", "workflows",
           Analytics, query=AnalyticsQuery)
async def analytics(request: Request) -> JSONResponse:
    """GET /api/analytics?since=&until=&groupBy=user|type&bucket=minute|hour (default: the last 24 hours, per
    type, no series). With `bucket`, `series` counts the tasks that finished in each minute or hour of the
    period (throughput and failures). A superuser sees everyone (or one user with userId=); a user sees their
    own tasks only."""
    principal = await authenticate(request)
    query = AnalyticsQuery.read(request.query_params)
    until = query.until or datetime.now(UTC)
    since = query.since or until - timedelta(hours=24)
    if since >= until:
        raise v.fail("since", "must be before until")
    if until - since > _MAX_PERIOD:
        raise v.fail("since", "the period is at most 366 days")
    group_by, bucket = query.group_by or "type", query.bucket
    if bucket is not None and (until - since) / BUCKETS[bucket] > MAX_POINTS:
        raise v.fail("bucket", f"at most {MAX_POINTS} {bucket}s per request: shorten the period or ask for hours")
    owner = principal.owner if principal.owner is not None else query.user_id
    rows = await store.task_analytics(_pool(request), since, until, group_by, owner)
    groups = {r["key"]: analytics_json(r) for r in rows}
    for c in await store.analytics_costs(_pool(request), since, until, group_by, owner):
        group = groups.get(c["key"])
        if group is None:  # calls in the period of tasks created before it: a group of their own
            group = groups[c["key"]] = {"key": c["key"], "costUsd": 0.0, "costByDay": [], "unpricedCalls": 0}
        group["costUsd"] += c["cost_usd"]
        group["unpricedCalls"] += c["unpriced_calls"]
        group["costByDay"].append({"day": c["day"].isoformat(), "costUsd": c["cost_usd"],
                                   "unpricedCalls": c["unpriced_calls"]})
    out: dict[str, Any] = {"since": since.isoformat(), "until": until.isoformat(), "groupBy": group_by,
                           "groups": [groups[k] for k in sorted(groups)]}
    if bucket is not None:
        points = await store.task_throughput(_pool(request), since, until, bucket, owner)
        out["series"] = {"bucket": bucket, "points": [
            {"start": _iso(p["start"]), "completed": p["completed"], "failed": p["failed"],
             "cancelled": p["cancelled"]} for p in points]}
    return ok(out)

