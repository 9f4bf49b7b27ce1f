"""Model usage for the API (asyncpg): totals per user and task type, and one task's calls."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from .. import queries

Executor = asyncpg.Connection | asyncpg.Pool


async def usage_totals(conn: Executor, user_id: str | None, task_types: Sequence[str] | None = None,
                       since: datetime | None = None, until: datetime | None = None) -> list[asyncpg.Record]:
    """Rows of (user_id, task_type, calls, prompt_tokens, completion_tokens, total_tokens, duration_ms, tasks).
    ``user_id`` None: every user's (superusers only)."""
    types = list(task_types) if task_types else None
    return await conn.fetch(queries.get("usage_totals").sql, user_id, types, since, until)


async def task_model_calls(conn: Executor, task_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("task_model_calls").sql, task_id)
