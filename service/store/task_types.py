"""Published task types: a worker publishes what it serves (psycopg), the API lists and reads them (asyncpg)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg

from .. import queries
from ..actors import TaskType
from .driver import Conn, run, value


def definition(t: TaskType) -> dict[str, Any]:
    """What a worker publishes of a type (the columns of task_types)."""
    return {"name": t.name, "description": t.description[:2000], "payload_schema": t.payload_schema,
            "result_schema": t.result_schema, "max_retries": t.max_retries, "time_limit_s": t.time_limit_s,
            "needs_project": t.needs_project, "diagnostic": t.diagnostic, "handler": t.handler}


def publish_task_types(conn: Conn, worker_id: str, types: Iterable[TaskType]) -> int:
    return int(value(run(conn, "publish_task_types", worker_id, json.dumps([definition(t) for t in types]))) or 0)


def from_row(row: Any) -> TaskType:
    """A published type as the registry's TaskType (no function: this process does not run it)."""
    return TaskType(
        row["name"], row["handler"], row["description"], json.loads(row["payload_schema"]),
        needs_project=row["needs_project"], time_limit_s=row["time_limit_s"], max_retries=row["max_retries"],
        diagnostic=row["diagnostic"],
        result_schema=json.loads(row["result_schema"]) if row["result_schema"] else None,
    )


async def list_task_types(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return await conn.fetch(queries.get("list_task_types").sql)
