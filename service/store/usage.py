"""Model usage for the API (asyncpg): totals per user and task type, and one task's calls."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from .. import queries

Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"


async def usage_totals(conn: Executor, user_id: str | None, task_types: Sequence[str] | None = None,
                       since: datetime | None = None, until: datetime | None = None) -> list[Any]:
    """Rows of (user_id, task_type, calls, prompt_tokens, completion_tokens, total_tokens, duration_ms, tasks).
    ``user_id`` None: every user's (superusers only)."""
    types = list(task_types) if task_types else None
    return await conn.fetch(queries.get("usage_totals").sql, user_id, types, since, until)


async def task_model_calls(conn: Executor, task_id: str) -> list[Any]:
    return await conn.fetch(queries.get("task_model_calls").sql, task_id)
