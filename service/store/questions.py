"""Quiz questions. For the actors, over psycopg (through `task.db`): insert a generation task's questions, load
a user's questions by id, record validation verdicts, set new emoji; writes are conditional on the task's
attempt, so a cancelled attempt changes nothing. For the API, over asyncpg: list, read and delete a caller's
questions (`owner` None: a superuser's, everyone's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from psycopg.types.json import Jsonb

from .. import queries
from .driver import Conn, run


def insert_questions(conn: Conn, task_id: str, attempt: int, user_id: str, category: str, age_group: str,
                     difficulty: str, questions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store the questions (keys question, options, correctAnswer, emoji, explanation), replacing any that an
    earlier attempt of the task stored; returns the stored rows in the given order (empty if the attempt no
    longer holds the task)."""
    with conn.transaction():
        rows = run(conn, "insert_questions", task_id, attempt, user_id, category, age_group,
                   Jsonb(list(questions)), difficulty).fetchall()
    return sorted((dict(r) for r in rows), key=lambda r: r["id"])


def load_questions(conn: Conn, user_id: str, ids: Sequence[int]) -> list[dict[str, Any]]:
    """User ``user_id``'s questions among ``ids``, by id; another user's ids are simply not returned."""
    return [dict(r) for r in run(conn, "load_questions", user_id, list(ids)).fetchall()]


def record_verdicts(conn: Conn, task_id: str, attempt: int, user_id: str,
                    verdicts: Sequence[dict[str, Any]]) -> set[int]:
    """Verdicts as {id, verdict, reason}; returns the ids updated."""
    return {r["id"] for r in run(conn, "record_verdicts", task_id, attempt, user_id,
                                 Jsonb(list(verdicts))).fetchall()}


def update_emoji(conn: Conn, task_id: str, attempt: int, user_id: str, emoji: Sequence[dict[str, Any]]) -> set[int]:
    """New emoji as {id, emoji}; returns the ids updated."""
    return {r["id"] for r in run(conn, "update_emoji", task_id, attempt, user_id, Jsonb(list(emoji))).fetchall()}


# ---------------------------------------------------------------- the API's (asyncpg)

async def list_questions(conn: asyncpg.Pool, owner: str | None, *, category: str | None = None,
                         difficulty: str | None = None, age_group: str | None = None, task_id: str | None = None,
                         before_id: int | None = None, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("list_questions").sql, owner, category, difficulty, age_group, task_id,
                            before_id, limit)


async def get_question(conn: asyncpg.Pool, question_id: int, owner: str | None) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("get_question").sql, question_id, owner)


async def delete_question(conn: asyncpg.Pool, question_id: int, owner: str | None) -> bool:
    return await conn.fetchval(queries.get("delete_question").sql, question_id, owner) is not None
