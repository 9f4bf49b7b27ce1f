"""The resource API for tasks: /api/tasks (list, create, batch, counts, bulk actions) and /api/tasks/{id}
(read, change status, delete, cancel, retry). Seed one's and seed two's paths (seeds.py) reuse these pieces."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..catalog import CATALOG
from ..errors import Forbidden, TaskNotFound
from ..settings import Settings
from ..states import Status
from ..store import tasks as store
from ..store import usage as usage_store
from ..store import workflows as workflow_store
from . import replies as r
from . import validation as v
from .auth import Principal, authenticate, authenticate_reader
from .contract import operation
from .fields import read_body, read_optional_body
from .requests import (
    IDEMPOTENCY_KEY,
    BulkBody,
    CancelBody,
    CreateBatch,
    CreateTask,
    ListQuery,
    NoBody,
    StatusChange,
    TaskFilters,
    TokenQuery,
    UsageQuery,
)
from .serialize import counts_json, iso, ok, resource_task_json, task_json, waiting_json
from .tokens import with_subscribe_token

BULK_LIMIT = 10_000  # rows one bulk call changes at most; `more: true` says call again
# The totals of a search (project, creation range or text) count at most this many rows, then say so
# (`countsCapped`); the owner and type scopes come from task_counts, which costs nothing.
COUNT_CAP = 50_000
# A listed task carries its result whole only up to this many bytes of JSON; larger ones are a preview
# (`resultTruncated: true`) and GET /api/tasks/{id} has them whole: a page of 100 stays well under 1 MB.
LIST_RESULT_BYTES = 1_000


def pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def settings(request: Request) -> Settings:
    return request.app.state.settings


# ---------------------------------------------------------------- shared by the resource and seed APIs

async def types_ready(request: Request, *names: Any) -> None:
    """Before validating: the catalog re-reads published types if stale or if one of `names` (task type
    names, or comma-separated lists of them) is not known yet (service/catalog.py)."""
    split = [n for name in names if isinstance(name, str) for n in name.split(",")]
    await CATALOG.ready(pool(request), split)


async def visible_task(request: Request, principal: Principal, task_id: str) -> asyncpg.Record:
    if not principal.may_read(task_id):
        raise TaskNotFound(task_id)  # a read token for other tasks: as if this one did not exist
    row = await store.get_visible_task(pool(request), v.check_task_id(task_id), principal.owner)
    if row is None:
        raise TaskNotFound(task_id)
    return row


async def create_from_body(request: Request, principal: Principal, model: type[CreateTask]) -> tuple[
        asyncpg.Record, bool]:
    """Validate and insert one task: one statement (plus its NOTIFY). (row, created now?)"""
    raw = await v.read_json_object(request)
    await types_ready(request, raw.get("taskType"))
    body = model.parse(raw)
    spec = body.spec(principal, settings(request).project_roots, idempotency_key=v.idempotency_key(request))
    # Under the creation rate limit (429), and with its dependencies, in one transaction (api/workflows.py).
    row = (await workflow_store.create_tasks_checked(pool(request), [spec], [body.depends_on]))[0]
    return row, bool(row["is_new"]) if "is_new" in row.keys() else True


async def cancel_one(request: Request, principal: Principal, task_id: str, reason: str) -> asyncpg.Record:
    row = await store.cancel_visible_task(pool(request), v.check_task_id(task_id), principal.owner, reason)
    if row is None:
        raise TaskNotFound(task_id)
    return row


async def retry_one(request: Request, principal: Principal, task_id: str) -> asyncpg.Record:
    row = await store.retry_visible_task(pool(request), v.check_task_id(task_id), principal.owner)
    if row is None:
        raise TaskNotFound(task_id)
    return row


async def delete_one(request: Request, principal: Principal, task_id: str) -> asyncpg.Record:
    row = await store.delete_visible_task(pool(request), v.check_task_id(task_id), principal.owner)
    if row is None:
        raise TaskNotFound(task_id)
    return row


EXTERNAL_HOLDER = "external:"  # worker_id of a task an external processor runs: external:<user id>


async def update_status(request: Request, principal: Principal, task_id: str,
                        body: StatusChange) -> asyncpg.Record:
    """Seed one's PUT and the resource PATCH: status, errorMessage, resultData, progress, description.

    Only a lease makes a task running: a superuser (an external processor's key) that moves a task to
    processing takes a new attempt with a lease of BGTASKS_LEASE_S, as a worker's claim does; each later
    update it makes while the task runs (progress, or processing again) extends that lease, and the reaper
    takes the task back when nobody does. Plain users cannot run tasks (403): a worker runs them."""
    status, progress, description = body.status, body.progress, body.description
    if status is None and progress is None and description is None:
        raise v.fail("status", "required (or progress or description, to report on a running task)")
    if not principal.is_superuser and (status == Status.PROCESSING or progress is not None
                                       or description is not None):
        field = "status" if status == Status.PROCESSING else ("progress" if progress is not None
                                                              else "description")
        raise Forbidden(
            f"{field}: only a worker's claim or an external processor with a superuser key may run a task or "
            "report on it (a processing task holds a lease that its holder extends); create the task and a "
            "worker runs it", field=field)
    changes: dict[str, Any] = {}
    if "errorMessage" in body.given():
        changes["error_message"] = body.error_message
    if "resultData" in body.given():
        changes["result_data"] = body.result_data
    row = await store.set_task_status(
        pool(request), v.check_task_id(task_id), principal.owner, status.value if status else None,
        holder=EXTERNAL_HOLDER + principal.user_id, lease_s=settings(request).bgtasks_lease_s,
        progress=progress, description=description, **changes)
    if row is None:
        raise TaskNotFound(task_id)
    return row


async def counts_for(request: Request, principal: Principal, user_id: str | None, visible: bool,
                     task_types: list[str] | None = None, *, seed_two: bool = False) -> dict[str, int]:
    counts = await store.count_tasks_by_status(pool(request), user_id, task_types) if visible else {}
    return counts_json(counts, seed_two=seed_two)


async def totals_for(request: Request, flt: store.TaskFilter, visible: bool) -> dict[str, Any]:
    """The list's totals: `counts` by status under every filter but the status (each count is the number the
    status filter would show), `matching` under every filter, and `countsCapped` when a search stopped
    counting at COUNT_CAP rows (the figures are then at least that)."""
    counts, capped = await store.count_tasks_matching(pool(request), flt, COUNT_CAP) if visible else ({}, False)
    out = counts_json(counts)
    matching = sum(out[s] for s in flt.statuses) if flt.statuses else out["total"]
    return {"counts": out, "matching": matching, "countsCapped": capped}


# ---------------------------------------------------------------- /api/tasks

@operation("List tasks (filters, search, sort, cursor) with counts by status", "tasks", r.TaskList,
           query=ListQuery)
async def list_tasks(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    await types_ready(request, request.query_params.get("type"))
    query = ListQuery.read(request.query_params)
    flt, visible = query.task_filter(principal, query.type)
    sort, limit = query.sort, query.limit
    after = v.decode_cursor(query.cursor, sort)
    rows = await store.list_tasks(pool(request), flt, sort=sort, after=after, limit=limit + 1,
                                  preview_over_bytes=LIST_RESULT_BYTES) if visible else []
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = v.encode_cursor(sort, *store.cursor_key(rows[-1], sort))
    totals = await totals_for(request, flt, visible)
    return ok({"tasks": [resource_task_json(r) for r in rows], "nextCursor": next_cursor, **totals})


@operation("Create a task (Idempotency-Key: a repeated key returns the first task, 200)", "tasks", r.Created,
           status=201, body=CreateTask, also={200: r.Created}, headers=[IDEMPOTENCY_KEY])
async def create_task(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    row, created = await create_from_body(request, principal, CreateTask)
    out: dict[str, Any] = {"task": with_subscribe_token(request, principal, task_json(row)), "created": created}
    if (waiting := waiting_for_worker(row["task_type"])) is not None:
        out["waiting"] = waiting
    return ok(out, status_code=201 if created else 200)


def waiting_for_worker(task_type: str) -> str | None:
    """A sentence when workers published `task_type` but none of them is live: the task waits for one."""
    if CATALOG.live_workers(task_type) == 0:
        return f"no live worker serves task type {task_type!r}; the task waits until one starts"
    return None


@operation("Create up to 1000 tasks in one statement", "tasks", r.Batch, status=201, body=CreateBatch)
async def create_batch(request: Request) -> JSONResponse:
    """Up to 1000 tasks in one INSERT statement (one NOTIFY)."""
    principal = await authenticate(request)
    raw = await v.read_json_object(request)
    items = raw.get("tasks")
    await types_ready(request, *(i.get("taskType") for i in items if isinstance(i, dict)) if isinstance(
        items, list) else ())
    body = CreateBatch.parse(raw)
    roots = settings(request).project_roots
    specs = [item.spec(principal, roots, idempotency_key=item.idempotency_key, where=f"tasks[{i}].")
             for i, item in enumerate(body.tasks)]
    depends_on = [item.depends_on for item in body.tasks]
    rows = await workflow_store.create_tasks_checked(pool(request), specs, depends_on)
    return ok({"tasks": [with_subscribe_token(request, principal, task_json(r)) for r in rows], "count": len(rows)},
              status_code=201)


@operation("The list's totals without a page: counts by status and matching, under the list's filters", "tasks",
           r.Totals, query=TaskFilters)
async def task_counts(request: Request) -> JSONResponse:
    """GET /api/tasks/counts: the list's totals (totals_for) under the list's filters, without a page."""
    principal = await authenticate(request)
    await types_ready(request, request.query_params.get("type"))
    query = TaskFilters.read(request.query_params)
    flt, visible = query.task_filter(principal, query.type)
    return ok(await totals_for(request, flt, visible))


@operation("Cancel, retry or delete many tasks by ids and/or filter", "tasks", r.BulkDone, body=BulkBody,
           path={"action": {"schema": {"enum": ["cancel", "retry", "delete"]}}})
async def bulk_action(request: Request) -> JSONResponse:
    """POST /api/tasks/bulk/{action}: cancel, retry or delete by `ids`, by `filter`, or both (intersection)."""
    principal = await authenticate(request)
    action = request.path_params["action"]
    if action not in ("cancel", "retry", "delete"):
        raise TaskNotFound(f"bulk/{action}")  # no such sub-resource
    body = await read_body(request, BulkBody)
    ids = [i for i in dict.fromkeys(body.ids) if v.TASK_ID.match(i)] if body.ids is not None else None
    params = body.filter.params() if body.filter else {}
    await types_ready(request, *params.get("type", []))
    query = TaskFilters.parse(params, "filter.")
    flt, visible = query.task_filter(principal, query.type)
    reason = body.reason or f"cancelled by {principal.user_id}"
    changed: list[str] = []
    if visible and (ids is None or ids):
        op = {"cancel": store.cancel_tasks_matching, "retry": store.retry_tasks_matching,
              "delete": store.delete_tasks_matching}[action]
        extra = {"reason": reason} if action == "cancel" else {}
        changed = await op(pool(request), flt, ids, limit=BULK_LIMIT, **extra)
    result: dict[str, Any] = {"action": action, "count": len(changed), "ids": changed,
                              "more": ids is None and len(changed) >= BULK_LIMIT}
    if ids is not None:
        done = set(changed)
        result["skipped"] = [i for i in body.ids or [] if i not in done]
    return ok(result)


# ---------------------------------------------------------------- /api/tasks/{id}

@operation("Read a task (also with a read token that names it: ?token=): the task with waitingFor, dependsOn "
           "and dependents, its upstream and downstream tasks, its failed attempts with their tracebacks, its model "
           "calls", "tasks", r.TaskDetail, query=TokenQuery)
async def get_task(request: Request) -> JSONResponse:
    principal = await authenticate_reader(request)  # a read token naming this task may read it
    row = await visible_task(request, principal, request.path_params["task_id"])
    attempts = await store.task_attempts(pool(request), row["id"])
    calls = await usage_store.task_model_calls(pool(request), row["id"])
    links = await store.task_waiting_and_links(pool(request), row["id"])
    task = task_json(row)
    upstream = list(links["upstream"]) if links else []
    downstream = list(links["downstream"]) if links else []
    task["dependsOn"] = [u["id"] for u in upstream]
    task["dependents"] = [d["id"] for d in downstream]
    task["waitingFor"] = waiting_json(links["waiting_reason"]) if links and task["status"] == "pending" else None
    return ok({
        "task": task,
        "upstream": upstream,
        "downstream": downstream,
        "attempts": [{"attempt": a["attempt"], "workerId": a["worker_id"], "errorType": a["error_type"],
                      "errorMessage": a["error_message"], "traceback": a["traceback"], "outcome": a["outcome"],
                      "startedAt": iso(a["started_at"]), "failedAt": iso(a["failed_at"])} for a in attempts],
        "modelCalls": [{"attempt": c["attempt"], "model": c["model"], "promptTokens": c["prompt_tokens"],
                        "completionTokens": c["completion_tokens"], "totalTokens": c["total_tokens"],
                        "cachedPromptTokens": c["cached_prompt_tokens"], "costUsd": _usd(c["cost_usd"]),
                        "durationMs": c["duration_ms"], "at": iso(c["created_at"])} for c in calls],
        # What the task's model calls cost, over every attempt and re-ask (calls of unpriced models left out).
        "costUsd": _usd(sum((c["cost_usd"] for c in calls if c["cost_usd"] is not None), Decimal(0))),
    })


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@operation("Who the caller is", "accounts", r.Me)
async def me(request: Request) -> JSONResponse:
    """Who the caller is: the dashboard shows superuser controls from this."""
    principal = await authenticate(request)
    return ok({"userId": principal.user_id, "isSuperuser": principal.is_superuser})


@operation("Model usage totals per user and task type", "usage", r.Usage, query=UsageQuery)
async def usage(request: Request) -> JSONResponse:
    """Model usage totals per user and task type (own for users; everyone's, or ?userId=, for superusers)."""
    principal = await authenticate(request)
    await types_ready(request, request.query_params.get("type"))
    query = UsageQuery.read(request.query_params)
    user_id = query.user_id if principal.is_superuser else principal.user_id
    rows = await usage_store.usage_totals(pool(request), user_id, query.type, query.since, query.until)
    return ok({"usage": [{"userId": r["user_id"], "taskType": r["task_type"], "calls": r["calls"],
                          "tasks": r["tasks"], "promptTokens": r["prompt_tokens"],
                          "completionTokens": r["completion_tokens"], "totalTokens": r["total_tokens"],
                          "cachedPromptTokens": r["cached_prompt_tokens"], "costUsd": _usd(r["cost_usd"]),
                          "unpricedCalls": r["unpriced_calls"], "durationMs": r["duration_ms"]} for r in rows]})


@operation("Change a task's status (the state machine decides: 409 when illegal)", "tasks", r.OneTask,
           body=StatusChange)
async def patch_task(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    body = await read_body(request, StatusChange)
    row = await update_status(request, principal, request.path_params["task_id"], body)
    return ok({"task": task_json(row)})


@operation("Delete a task", "tasks", r.Deleted)
async def delete_task(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    row = await delete_one(request, principal, request.path_params["task_id"])
    return ok({"deleted": row["id"]})


@operation("Cancel a pending or processing task", "tasks", r.OneTask, body=CancelBody, body_required=False)
async def cancel_task(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    body = await read_optional_body(request, CancelBody)
    reason = body.reason or f"cancelled by {principal.user_id}"
    row = await cancel_one(request, principal, request.path_params["task_id"], reason)
    return ok({"task": task_json(row)})


@operation("Retry an error or cancelled task", "tasks", r.OneTask)
async def retry_task(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    await read_optional_body(request, NoBody)
    row = await retry_one(request, principal, request.path_params["task_id"])
    return ok({"task": task_json(row)})
