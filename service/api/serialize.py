"""Task rows as JSON: the one shape of a task in the resource API, seed one's API and live events.

`task_json(row)` is camelCase with ISO 8601 times. `seed_two=True` is what seed two's endpoints show: status
`failed` instead of `error`, plus seed two's own column names (`user_id`, `task_type`, `created_at` in epoch
milliseconds, ...) so a client written against that document reads the fields it expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse

from ..states import Status, seed_two_status

STATUSES: tuple[str, ...] = tuple(s.value for s in Status)

# camelCase name -> column name, in the order a reader expects them.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("taskType", "task_type"),
    ("status", "status"),
    ("priority", "priority"),
    ("userId", "user_id"),
    ("projectId", "project_id"),
    ("projectName", "project_name"),
    ("projectPath", "project_path"),
    ("label", "label"),
    ("description", "description"),
    ("payload", "payload"),
    ("progress", "progress"),
    ("total", "total"),
    ("retryCount", "retry_count"),
    ("maxRetries", "max_retries"),
    ("errorMessage", "error_message"),
    ("resultData", "result_data"),
    ("result", "result"),
    ("runAt", "run_at"),
    ("attempt", "attempt"),
    ("workerId", "worker_id"),
    ("leaseExpiresAt", "lease_expires_at"),
    ("cancelReason", "cancel_reason"),
    ("promptTokens", "prompt_tokens"),
    ("completionTokens", "completion_tokens"),
    ("seq", "change_seq"),
    ("createdAt", "created_at"),
    ("updatedAt", "updated_at"),
    ("startedAt", "started_at"),
    ("completedAt", "completed_at"),
)
# Seed two's columns (its D1 table) under their own names; its times are INTEGER epoch milliseconds.
_SEED_TWO_ALIASES: tuple[tuple[str, str], ...] = (
    ("user_id", "user_id"),
    ("task_type", "task_type"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    ("completed_at", "completed_at"),
)
# Seed one's columns (its SQLite table) under their own names; times as ISO 8601 like the camelCase ones.
_SEED_ONE_ALIASES: tuple[tuple[str, str], ...] = (
    ("project_id", "project_id"),
    ("project_name", "project_name"),
    ("project_path", "project_path"),
    ("task_type", "task_type"),
    ("retry_count", "retry_count"),
    ("max_retries", "max_retries"),
    ("error_message", "error_message"),
    ("result_data", "result_data"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    ("started_at", "started_at"),
    ("completed_at", "completed_at"),
)


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _millis(value: Any) -> Any:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def _get(row: Mapping[str, Any], column: str) -> Any:
    try:
        return row[column]
    except KeyError:
        return None


def task_json(row: Mapping[str, Any], *, seed_two: bool = False) -> dict[str, Any]:
    """A task row (asyncpg Record or dict with the table's columns) as the API shows it."""
    out: dict[str, Any] = {}
    for name, column in _FIELDS:
        value = _get(row, column)
        out[name] = iso(value)
    if out["result"] is None and out["resultData"] is not None:  # rows built before `result` existed
        out["result"] = out["resultData"]
    status = str(out["status"]) if out["status"] is not None else None
    out["status"] = seed_two_status(status) if seed_two and status else status
    # Lists flag a result they show only as a preview; a task read alone always has it whole.
    out["resultTruncated"] = bool(row["result_truncated"]) if "result_truncated" in row.keys() else False
    if "depends_on" in row.keys():  # once task dependencies exist, a query may select them
        out["dependsOn"] = list(row["depends_on"] or [])
    if seed_two:
        for alias, column in _SEED_TWO_ALIASES:
            out[alias] = _millis(_get(row, column))
    return out


def resource_task_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """The resource API's task (/api/tasks): `task_json` plus `waitingFor`, why a pending task is not running
    yet (task_waiting_reason() in SQL: {"reason", "text", ...}; null unless pending). Seed paths keep their
    shapes and do not carry it."""
    out = task_json(row)
    reason = row["waiting_reason"] if "waiting_reason" in row.keys() else None
    out["waitingFor"] = waiting_json(reason) if out["status"] == "pending" else None
    return out


def waiting_json(reason: Any) -> dict[str, Any] | None:
    if not isinstance(reason, Mapping):
        return None
    return {k: iso(v) for k, v in reason.items()}


def seed_one_task_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """Seed one's API: the camelCase task plus seed one's snake_case column names."""
    out = task_json(row)
    for alias, column in _SEED_ONE_ALIASES:
        out[alias] = iso(_get(row, column))
    return out


def counts_json(counts: Mapping[str, int], *, seed_two: bool = False) -> dict[str, int]:
    """Counts by status with every status present (0 when absent) and their total."""
    out = {s: int(counts.get(s, 0)) for s in STATUSES}
    if seed_two:
        out["failed"] = out.pop(Status.ERROR.value)
    out["total"] = sum(out.values())
    return out


def queue_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """The queue settings row as seed one's `queueSettings` (it reads `isActive`)."""
    return {
        "isActive": row["is_active"],
        "pollInterval": row["poll_interval"],
        "maxConcurrentTasks": row["max_concurrent_tasks"],
        "retryBaseDelayMs": row["retry_base_delay_ms"],
        "retryMaxDelayMs": row["retry_max_delay_ms"],
        "lastPollAt": iso(row["last_poll_at"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def ok(data: Mapping[str, Any] | None = None, *, status_code: int = 200) -> JSONResponse:
    """A success response: `{"success": true, ...data}`."""
    return JSONResponse({"success": True, **(data or {})}, status_code=status_code)
