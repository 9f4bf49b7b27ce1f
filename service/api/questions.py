"""Quiz questions as a resource: GET /api/questions (the caller's; filters by category, difficulty, age group
and generating task; newest first with a cursor), GET and DELETE /api/questions/{id}. Owner isolation as for
tasks: another user's question is "not found"; a superuser sees everyone's (`userId` narrows)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import NotFound
from ..store import questions as store
from . import validation as v
from .auth import authenticate
from .requests import owner_filter
from .serialize import iso, ok
from .tasks import pool

DIFFICULTIES = ("easy", "medium", "hard")
AGE_GROUPS = ("children", "youth", "adults")
_MAX_ID = 2**62


def question_json(row: Mapping[str, Any]) -> dict[str, Any]:
    verdict = row["validation_verdict"]
    return {
        "id": row["id"], "userId": row["user_id"], "taskId": row["task_id"], "category": row["category"],
        "ageGroup": row["age_group"], "difficulty": row["difficulty"], "question": row["question"],
        "options": row["options"], "correctAnswer": row["correct_answer"], "emoji": row["emoji"],
        "explanation": row["explanation"],
        "validation": None if verdict is None else {"verdict": verdict, "reason": row["validation_reason"],
                                                    "validatedAt": iso(row["validated_at"])},
        "createdAt": iso(row["created_at"]), "updatedAt": iso(row["updated_at"]),
    }


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = v.q_str(params, name)
    if value is not None and value not in allowed:
        raise v.fail(name, f"expected one of {', '.join(allowed)}, got {value[:40]!r}")
    return value


def _question_id(raw: str) -> int:
    """A question id from the path; anything that cannot be one is simply not found."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or not 0 < int(raw) < _MAX_ID:
        raise NotFound(f"question {raw[:40]!r} not found")
    return int(raw)


async def list_questions(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    params = request.query_params
    owner, visible = owner_filter(principal, v.q_str(params, "userId"))
    task_id = v.q_str(params, "taskId")
    if task_id is not None and not v.TASK_ID.match(task_id):
        raise v.fail("taskId", f"not a task id: {task_id[:40]!r}")
    limit = v.q_limit(params)
    before = v.q_int(params, "cursor", 1, _MAX_ID, 0) or None  # the previous page's nextCursor
    rows = await store.list_questions(
        pool(request), owner, category=v.q_str(params, "category"),
        difficulty=_choice(params, "difficulty", DIFFICULTIES), age_group=_choice(params, "ageGroup", AGE_GROUPS),
        task_id=task_id, before_id=before, limit=limit + 1) if visible else []
    next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
    return ok({"questions": [question_json(r) for r in rows[:limit]], "nextCursor": next_cursor})


async def get_question(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    raw = request.path_params["question_id"]
    row = await store.get_question(pool(request), _question_id(raw), principal.owner)
    if row is None:
        raise NotFound(f"question {raw!r} not found")
    return ok({"question": question_json(row)})


async def delete_question(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    raw = request.path_params["question_id"]
    if not await store.delete_question(pool(request), _question_id(raw), principal.owner):
        raise NotFound(f"question {raw!r} not found")
    return ok({"deleted": int(raw)})
