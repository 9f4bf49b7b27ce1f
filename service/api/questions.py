"""Quiz questions as a resource: GET /api/questions (the caller's; filters by category, difficulty, age group
and generating task; newest first with a cursor), GET and DELETE /api/questions/{id}. Owner isolation as for
tasks: another user's question is "not found"; a superuser sees everyone's (`userId` narrows)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import NotFound
from ..store import questions as store
from . import replies as r
from . import validation as v
from .auth import authenticate
from .contract import operation
from .fields import Checked, OneOf, Q, QInt, QStr, Query, invalid
from .requests import LIMIT, owner_filter
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


def _question_id(raw: str) -> int:
    """A question id from the path; anything that cannot be one is simply not found."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or not 0 < int(raw) < _MAX_ID:
        raise NotFound(f"question {raw[:40]!r} not found")
    return int(raw)


def _task_id(values: list[str] | None) -> str | None:
    task_id = QStr(64).check(values)
    if task_id is not None and not v.TASK_ID.match(task_id):
        raise invalid(f"not a task id: {task_id[:40]!r}")
    return task_id


class QuestionsQuery(Query):
    category: Annotated[str | None, QStr(200, "exact, any case")] = None
    difficulty: Annotated[str | None, Q(OneOf(*DIFFICULTIES))] = None
    age_group: Annotated[str | None, Q(OneOf(*AGE_GROUPS))] = None
    task_id: Annotated[str | None, Checked(_task_id, {"type": "string", "maxLength": 64},
                                           description="the generation task that made them")] = None
    user_id: Annotated[str | None, QStr(200, "superusers only")] = None
    cursor: Annotated[int, QInt(1, _MAX_ID, 0, "the previous page's nextCursor")] = 0
    limit: Annotated[int, LIMIT] = 100


QUESTION_ID = {"question_id": {"description": "a question's id"}}



class Verdict(r.Reply):
    verdict: Annotated[str, r.enum("valid", "invalid", "uncertain")]
    reason: str | None = None
    validated_at: datetime | None = None


class Question(r.Reply):
    id: int
    user_id: str
    task_id: str | None = None
    category: str
    age_group: str
    difficulty: str
    question: str
    options: list[str]
    correct_answer: str
    emoji: str | None = None
    explanation: str | None = None
    validation: Verdict | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Questions(r.Ok):
    questions: list[Question]
    next_cursor: str | None


class OneQuestion(r.Ok):
    question: Question


@operation("Quiz questions of the caller (a superuser's: everyone's), newest first", "questions", Questions,
           query=QuestionsQuery)
async def list_questions(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    query = QuestionsQuery.read(request.query_params)
    owner, visible = owner_filter(principal, query.user_id)
    limit = query.limit
    rows = await store.list_questions(
        pool(request), owner, category=query.category, difficulty=query.difficulty, age_group=query.age_group,
        task_id=query.task_id, before_id=query.cursor or None, limit=limit + 1) if visible else []
    next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
    return ok({"questions": [question_json(r) for r in rows[:limit]], "nextCursor": next_cursor})


@operation("One quiz question", "questions", OneQuestion, path=QUESTION_ID)
async def get_question(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    raw = request.path_params["question_id"]
    row = await store.get_question(pool(request), _question_id(raw), principal.owner)
    if row is None:
        raise NotFound(f"question {raw!r} not found")
    return ok({"question": question_json(row)})


@operation("Delete a quiz question", "questions", r.Deleted, path=QUESTION_ID)
async def delete_question(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    raw = request.path_params["question_id"]
    if not await store.delete_question(pool(request), _question_id(raw), principal.owner):
        raise NotFound(f"question {raw!r} not found")
    return ok({"deleted": int(raw)})
