"""Both seed documents' endpoints, exactly as written, over the same code as the resource API.

Seed one (Kiro): /api/kiro/background-tasks (GET list, POST create, PUT status, DELETE ?action=...) and
/api/kiro/background-tasks/queue (GET status, POST start/stop). Seed two (Quizter): /api/generateAIQuestions
and /api/getBackgroundTasks, which show `failed` where everything else shows `error`. docs/seeds.md lists
where the two documents disagree and what bgtasks does.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import GetJsonSchemaHandler
from pydantic_core import CoreSchema
from starlette.requests import Request
from starlette.responses import JSONResponse

from bgtasks.actors import payloads

from ..store import tasks as store
from . import replies as r
from . import validation as v
from .auth import authenticate
from .contract import operation
from .fields import Body, OneOf, Q, QStr, Query, read_body
from .queue import queue_state, require_superuser, set_active
from .replies import QueueChanged, QueueState
from .requests import IDEMPOTENCY_KEY, LIMIT, TYPES, Filters, SeedOneCreate, SeedOneStatusChange
from .serialize import ok, seed_one_task_json, task_json
from .tasks import (
    cancel_one,
    counts_for,
    create_from_body,
    delete_one,
    pool,
    retry_one,
    types_ready,
    update_status,
)
from .tokens import with_subscribe_token

SEED_ONE_ACTIONS = ("cancel", "retry", "delete", "clear-completed")
# The seeds' lists carry results (their clients read them there), whole up to this many bytes of JSON each:
# a quiz of 50 questions fits; a pathological result is a preview (`resultTruncated: true`).
SEED_LIST_RESULT_BYTES = 64_000


# ---------------------------------------------------------------- seed one: /api/kiro/background-tasks

class SeedOneList(Filters):
    task_type: Annotated[list[str] | None, TYPES] = None
    limit: Annotated[int, LIMIT] = 100


class SeedOneDelete(Query):
    task_id: Annotated[str | None, QStr(200)] = None
    action: Annotated[str | None, Q(OneOf(*SEED_ONE_ACTIONS, message=f"expected one of: {', '.join(SEED_ONE_ACTIONS)}"))] = None
    project_id: Annotated[str | None, QStr(200, "clear-completed: only this project")] = None


class QueueAction(Body, extra="ignore"):
    action: Annotated[str | None, OneOf("start", "stop", message="expected 'start' or 'stop'", required=True)]


class SeedTwoList(Filters):
    limit: Annotated[int, LIMIT] = 100


class GenerationRequest(Body, extra="allow"):
    """Seed two's body: the generation task's payload, checked against its JSON schema (actors/payloads.py)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return dict(payloads.GENERATION)


@operation("Seed one: list tasks with taskCounts", "seed one", r.SeedOneTasks, query=SeedOneList)
async def kiro_list(request: Request) -> JSONResponse:
    """GET ?projectId&status&limit: the caller's tasks, newest first, and taskCounts by status."""
    principal = await authenticate(request)
    await types_ready(request, request.query_params.get("taskType"))
    query = SeedOneList.read(request.query_params)
    flt, visible = query.task_filter(principal, query.task_type)
    rows = await store.list_tasks(pool(request), flt, limit=query.limit,
                                  preview_over_bytes=SEED_LIST_RESULT_BYTES) if visible else []
    counts = await counts_for(request, principal, flt.user_id, visible)
    return ok({"tasks": [seed_one_task_json(r) for r in rows], "taskCounts": counts})


@operation("Seed one: create a task", "seed one", r.SeedOneOneTask, body=SeedOneCreate)
async def kiro_create(request: Request) -> JSONResponse:
    """POST {projectId, projectName, projectPath, taskType, priority, maxRetries}: {success, task}."""
    principal = await authenticate(request)
    row, _ = await create_from_body(request, principal, SeedOneCreate)
    return ok({"task": with_subscribe_token(request, principal, seed_one_task_json(row))})


@operation("Seed one: update a task's status", "seed one", r.SeedOneOneTask, body=SeedOneStatusChange)
async def kiro_update(request: Request) -> JSONResponse:
    """PUT {taskId, status, errorMessage, resultData}: a status change the state machine must allow (409)."""
    principal = await authenticate(request)
    body = await read_body(request, SeedOneStatusChange)
    assert body.task_id is not None
    row = await update_status(request, principal, body.task_id, body)
    return ok({"task": seed_one_task_json(row)})


@operation("Seed one: cancel, retry or delete a task, or clear completed tasks", "seed one", r.SeedOneDone,
           query=SeedOneDelete)
async def kiro_delete(request: Request) -> JSONResponse:
    """DELETE ?taskId&action=cancel|retry|delete, or ?action=clear-completed (completed tasks only)."""
    principal = await authenticate(request)
    query = SeedOneDelete.read(request.query_params)
    task_id = query.task_id
    action = query.action or ("delete" if task_id else None)
    if action not in SEED_ONE_ACTIONS:
        raise v.fail("action", f"expected one of: {', '.join(SEED_ONE_ACTIONS)}")
    if action == "clear-completed":
        n = await store.clear_completed_tasks(pool(request), principal.owner, query.project_id)
        return ok({"deletedCount": n, "message": f"cleared {n} completed task(s)"})
    if task_id is None:
        raise v.fail("taskId", f"required for action={action}")
    if action == "cancel":
        row = await cancel_one(request, principal, task_id, f"cancelled by {principal.user_id}")
    elif action == "retry":
        row = await retry_one(request, principal, task_id)
    else:
        row = await delete_one(request, principal, task_id)
        return ok({"message": f"task {row['id']} deleted", "taskId": row["id"]})
    return ok({"message": f"task {row['id']} {'cancelled' if action == 'cancel' else 'queued for retry'}",
               "task": seed_one_task_json(row)})


@operation("Seed one: queue status (queueSettings.isActive)", "seed one", QueueState)
async def kiro_queue_status(request: Request) -> JSONResponse:
    """GET: {success, queueSettings: {isActive, ...}, taskCounts}."""
    principal = await authenticate(request)
    return ok(await queue_state(request, principal))


@operation("Seed one: start or stop the queue (superusers)", "seed one", QueueChanged, body=QueueAction)
async def kiro_queue_action(request: Request) -> JSONResponse:
    """POST {action: start|stop} (superusers only)."""
    principal = await authenticate(request)
    require_superuser(principal)
    body = await read_body(request, QueueAction)
    return await set_active(request, body.action == "start", principal)


# ---------------------------------------------------------------- seed two

@operation("Seed two: queue AI question generation; returns taskId at once", "seed two", r.GenerationQueued,
           body=GenerationRequest, headers=[IDEMPOTENCY_KEY])
async def generate_ai_questions(request: Request) -> JSONResponse:
    """POST {amount, category, ageGroup, difficulty, provider}: a pending generation task; {success, taskId}."""
    principal = await authenticate(request)
    body = await v.read_json_object(request)
    body = {k: val for k, val in body.items() if val is not None}
    payload = v.check_payload(v.check_task_type("generation"), body, field="")
    spec = store.TaskSpec(
        task_type="generation",
        user_id=principal.user_id,
        payload=payload,
        label=f"AI questions: {payload['category'][:150]}",
        description=f"Genererar {payload['amount']} frågor om {payload['category'][:150]}",
        idempotency_key=v.idempotency_key(request),
    )
    row = (await store.create_tasks(pool(request), [spec]))[0]
    return ok({"taskId": row["id"], "task": with_subscribe_token(request, principal, task_json(row, seed_two=True))})


@operation("Seed two: a user's tasks (a superuser's without userId: everyone's)", "seed two", r.SeedTwoTasks,
           query=SeedTwoList)
async def get_background_tasks(request: Request) -> JSONResponse:
    """GET ?userId&limit (default 100): a user's tasks; a superuser's without userId are everyone's."""
    principal = await authenticate(request)
    query = SeedTwoList.read(request.query_params)
    flt, visible = query.task_filter(principal)
    rows = await store.list_tasks(pool(request), flt, limit=query.limit,
                                  preview_over_bytes=SEED_LIST_RESULT_BYTES) if visible else []
    return ok({"tasks": [task_json(r, seed_two=True) for r in rows], "count": len(rows)})
