"""Task rows for the API and the Python client (asyncpg): create in batches, read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from .. import queries


@dataclass
class TaskSpec:
    """What it takes to create a task (the API validates before building one)."""

    task_type: str
    user_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_retries: int = 3
    project_id: str | None = None
    project_name: str | None = None
    project_path: str | None = None
    label: str | None = None
    description: str | None = None
    run_at: datetime | None = None
    idempotency_key: str | None = None
    schedule_name: str | None = None
    scheduled_for: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("run_at", "scheduled_for"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


Executor = asyncpg.Connection | asyncpg.Pool


async def create_tasks(conn: Executor, specs: Sequence[TaskSpec]) -> list[asyncpg.Record]:
    """Insert every spec in one statement (one NOTIFY for the batch); returns the rows in no set order."""
    if not specs:
        return []
    # The pool's codec encodes the list as JSON.
    return await conn.fetch(queries.get("create_tasks").sql, [s.as_json() for s in specs])


async def create_task(conn: Executor, spec: TaskSpec) -> asyncpg.Record:
    rows = await create_tasks(conn, [spec])
    return rows[0]


async def get_task(conn: Executor, task_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(queries.get("get_task").sql, task_id)
