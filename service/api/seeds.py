"""Both seed documents' endpoints, exactly as written, over the same code as the resource API.

Seed one (Kiro): /api/kiro/background-tasks (GET list, POST create, PUT status, DELETE ?action=...) and
/api/kiro/background-tasks/queue (GET status, POST start/stop). Seed two (Quizter): /api/generateAIQuestions
and /api/getBackgroundTasks, which show `failed` where everything else shows `error`. docs/seeds.md lists
where the two documents disagree and what bgtasks does.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..store import tasks as store
from . import validation as v
from .auth import authenticate
from .queue import queue_state, require_superuser, set_active
from .serialize import ok, seed_one_task_json, task_json
from .tasks import (
    cancel_one,
    counts_for,
    create_from_body,
    delete_one,
    filter_from,
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

async def kiro_list(request: Request) -> JSONResponse:
    """GET ?projectId&status&limit: the caller's tasks, newest first, and taskCounts by status."""
    principal = await authenticate(request)
    params = request.query_params
    await types_ready(request, params.get("taskType"))
    flt, visible = filter_from(params, principal, type_key="taskType")
    limit = v.q_limit(params)
    rows = await store.list_tasks(pool(request), flt, limit=limit,
                                  preview_over_bytes=SEED_LIST_RESULT_BYTES) if visible else []
    counts = await counts_for(request, principal, flt.user_id, visible)
    return ok({"tasks": [seed_one_task_json(r) for r in rows], "taskCounts": counts})


async def kiro_create(request: Request) -> JSONResponse:
    """POST {projectId, projectName, projectPath, taskType, priority, maxRetries}: {success, task}."""
    principal = await authenticate(request)
    body = await v.read_json_object(request)
    row, _ = await create_from_body(request, principal, body, strict=False)
    return ok({"task": with_subscribe_token(request, principal, seed_one_task_json(row))})


async def kiro_update(request: Request) -> JSONResponse:
    """PUT {taskId, status, errorMessage, resultData}: a status change the state machine must allow (409)."""
    principal = await authenticate(request)
    body = await v.read_json_object(request)
    task_id = v.get_str(body, "taskId", required=True, max_len=200)
    assert task_id is not None
    row = await update_status(request, principal, task_id, body)
    return ok({"task": seed_one_task_json(row)})


async def kiro_delete(request: Request) -> JSONResponse:
    """DELETE ?taskId&action=cancel|retry|delete, or ?action=clear-completed (completed tasks only)."""
    principal = await authenticate(request)
    params = request.query_params
    task_id = v.q_str(params, "taskId")
    action = v.q_str(params, "action") or ("delete" if task_id else None)
    if action not in SEED_ONE_ACTIONS:
        raise v.fail("action", f"expected one of: {', '.join(SEED_ONE_ACTIONS)}")
    if action == "clear-completed":
        project_id = v.q_str(params, "projectId")
        n = await store.clear_completed_tasks(pool(request), principal.owner, project_id)
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


async def kiro_queue_status(request: Request) -> JSONResponse:
    """GET: {success, queueSettings: {isActive, ...}, taskCounts}."""
    principal = await authenticate(request)
    return ok(await queue_state(request, principal))


async def kiro_queue_action(request: Request) -> JSONResponse:
    """POST {action: start|stop} (superusers only)."""
    principal = await authenticate(request)
    require_superuser(principal)
    body = await v.read_json_object(request)
    action = body.get("action")
    if action not in ("start", "stop"):
        raise v.fail("action", "expected 'start' or 'stop'")
    return await set_active(request, action == "start", principal)


# ---------------------------------------------------------------- seed two

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


async def get_background_tasks(request: Request) -> JSONResponse:
    """GET ?userId&limit (default 100): a user's tasks; a superuser's without userId are everyone's."""
    principal = await authenticate(request)
    params = request.query_params
    flt, visible = filter_from(params, principal, type_key="")
    limit = v.q_limit(params, default=100)
    rows = await store.list_tasks(pool(request), flt, limit=limit,
                                  preview_over_bytes=SEED_LIST_RESULT_BYTES) if visible else []
    return ok({"tasks": [task_json(r, seed_two=True) for r in rows], "count": len(rows)})
