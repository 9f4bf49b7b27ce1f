"""The HTTP client's wire format, shared by `bgtasks.Client` and `bgtasks.AsyncClient` (http_client.py): the
request bodies and query strings they send, the typed answers they read (TaskInfo, TaskPage, TaskEvent, ApiError),
and what a live stream keeps to resume with Last-Event-ID (Resumable)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from .backoff import backoff_delay
from .errors import BgtasksError

FINISHED = ("completed", "error", "cancelled")
RECONNECTS = 5  # consecutive failed reconnects before a stream gives up
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)  # the server sends a keep-alive every 15 s


class ApiError(BgtasksError):
    """The API answered 4xx or 5xx: `status_code`, and its JSON error body (`error`, `field`, `code`)."""

    def __init__(self, status_code: int, body: Mapping[str, Any]) -> None:
        self.status_code = status_code
        self.body = dict(body)
        self.error: str = str(body.get("error") or f"HTTP {status_code}")
        self.field: str | None = body.get("field")
        self.code: str | None = body.get("code")
        super().__init__(f"{self.error} (HTTP {status_code})")


# The server's task ids (service/api/validation.py TASK_ID), without "." and "..": an id goes into the path, where
# "../queue/stop?" would name another endpoint (httpx resolves dot segments) for whoever holds the key.
_TASK_ID = re.compile(r"(?=.*[^.])[A-Za-z0-9_.:-]{1,64}")


def task_path(task_id: str, action: str = "") -> str:
    """/api/tasks/{task_id}[/action]; ApiError 404 (as the server answers a malformed id) for anything that is
    not a task id, without sending a request."""
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise ApiError(404, {"error": f"task {str(task_id)[:80]!r} not found", "code": "not_found"})
    return f"/api/tasks/{task_id}" + (f"/{action}" if action else "")


class StreamLost(BgtasksError):
    """A live stream dropped and could not be resumed within RECONNECTS attempts."""


_STATUS = {"failed": "error"}  # seed two's streams say failed; TaskInfo uses bgtasks' names


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class TaskInfo:
    """A task as the API shows it (`raw` keeps every field, seed aliases included)."""

    id: str
    task_type: str
    status: str
    progress: int
    user_id: str
    payload: dict[str, Any]
    result: Any
    error_message: str | None
    description: str | None
    label: str | None
    priority: int
    retry_count: int
    max_retries: int
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskInfo:
        return cls(
            id=str(data["id"]), task_type=str(data.get("taskType") or data.get("task_type") or ""),
            status=_STATUS.get(str(data.get("status")), str(data.get("status") or "")), progress=int(data.get("progress") or 0),
            user_id=str(data.get("userId") or data.get("user_id") or ""), payload=dict(data.get("payload") or {}),
            result=data.get("result"), error_message=data.get("errorMessage"),
            description=data.get("description"), label=data.get("label"), priority=int(data.get("priority") or 0),
            retry_count=int(data.get("retryCount") or 0), max_retries=int(data.get("maxRetries") or 0),
            created_at=_time(data.get("createdAt")), started_at=_time(data.get("startedAt")),
            completed_at=_time(data.get("completedAt")), raw=dict(data),
        )


@dataclass(frozen=True)
class TaskPage:
    tasks: list[TaskInfo]
    next_cursor: str | None
    counts: dict[str, int]


@dataclass(frozen=True)
class TaskEvent:
    """One live event. `type`: on /api/events `task`, `deleted`, `ready`, `queue`, `output`; on a task's own
    stream `update`, `complete`, `error`, `timeout`. `task` is set when the event carries one; `text` is the
    new live output of an `output` event ("" otherwise)."""

    type: str
    id: str | None
    task: TaskInfo | None
    data: dict[str, Any]

    @property
    def text(self) -> str:
        return str(self.data.get("text") or "") if self.type == "output" else ""


def parse_event(sse_event: str, sse_id: str | None, text: str) -> TaskEvent | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if sse_event == "message":  # a task's own stream (seed two's): the type is in the data
        task = data.get("task")
        info = TaskInfo.from_json(task) if isinstance(task, dict) and "id" in task else None
        return TaskEvent(str(data.get("type") or "message"), sse_id, info, data)
    task = TaskInfo.from_json(data) if sse_event == "task" else None
    return TaskEvent(sse_event, sse_id, task, data)


def create_body(task_type: str, payload: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any]:
    names = {"priority": "priority", "max_retries": "maxRetries", "label": "label", "description": "description",
             "user_id": "userId", "depends_on": "dependsOn", "project_id": "projectId",
             "project_name": "projectName", "project_path": "projectPath"}
    body: dict[str, Any] = {"taskType": task_type, "payload": dict(payload or {})}
    for key, value in options.items():
        if value is None:
            continue
        if key == "run_at":
            body["runAt"] = value.isoformat() if isinstance(value, datetime) else value
        elif key in names:
            body[names[key]] = list(value) if key == "depends_on" else value
        else:
            raise TypeError(f"create() got an unexpected keyword argument {key!r}")
    return body


def answer(resp: httpx.Response) -> dict[str, Any]:
    """The JSON body of an answer; ApiError for 4xx and 5xx."""
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text[:500] or resp.reason_phrase}
    if resp.status_code >= 400:
        raise ApiError(resp.status_code, body if isinstance(body, dict) else {"error": str(body)})
    return body if isinstance(body, dict) else {"data": body}


def list_params(status: str | Iterable[str] | None, task_type: str | Iterable[str] | None, limit: int,
                 cursor: str | None) -> dict[str, str]:
    params = {"limit": str(limit)}
    for key, value in (("status", status), ("type", task_type)):
        if value is not None:
            params[key] = value if isinstance(value, str) else ",".join(value)
    if cursor:
        params["cursor"] = cursor
    return params


def task_page(body: Mapping[str, Any]) -> TaskPage:
    return TaskPage([TaskInfo.from_json(t) for t in body["tasks"]], body.get("nextCursor"),
                    dict(body.get("counts") or {}))


def client_headers(api_key: str | None) -> dict[str, str]:
    headers = {"accept": "application/json", "user-agent": "bgtasks-client"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def stream_target(task_id: str | None, status: str | Iterable[str] | None,
                   task_type: str | Iterable[str] | None, output: bool = False) -> tuple[str, dict[str, str]]:
    if task_id is not None:
        if output:  # the resource stream of one task: its states and its live output
            return "/api/events", {"taskId": task_id}
        return "/api/subscribeToTask", {"taskId": task_id}
    params = list_params(status, task_type, 1, None)
    params.pop("limit")
    return "/api/events", params


def ends_stream(event: TaskEvent, task_id: str | None) -> bool:
    if task_id is None:
        return False
    if event.type == "task":  # /api/events?taskId=: the task's final state
        return event.task is not None and event.task.id == task_id and event.task.finished
    return event.type in ("complete", "error", "timeout", "deleted")


class Resumable:
    """What a live stream keeps across reconnects, for the sync and the async client alike: the last event id
    (sent back as Last-Event-ID) and the failures in a row (reset by any event; past RECONNECTS, StreamLost)."""

    def __init__(self, base_url: str, task_id: str | None, last_event_id: str | None) -> None:
        self.base_url, self.task_id, self.last_event_id = base_url, task_id, last_event_id
        self.failures = 0

    def headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream"}
        if self.last_event_id:
            headers["last-event-id"] = self.last_event_id
        return headers

    def take(self, sse: Any) -> TaskEvent | None:
        """The event of a received frame (None: one the client does not show)."""
        self.failures = 0
        self.last_event_id = sse.id or self.last_event_id
        return parse_event(sse.event, sse.id, sse.data)

    def ends(self, event: TaskEvent) -> bool:
        return ends_stream(event, self.task_id)

    def lost(self, exc: Exception) -> float:
        """The connection failed: how long to wait before reconnecting, or StreamLost after too many."""
        self.failures += 1
        if self.failures > RECONNECTS:
            raise StreamLost(f"lost the live stream from {self.base_url}: {exc}") from exc
        return backoff_delay(self.failures, 0.1, 2.0)
