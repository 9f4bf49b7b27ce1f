"""`bgtasks.Client` and `bgtasks.AsyncClient`: a web application's typed client of the HTTP API (httpx, and
httpx-sse for the live streams). Create, get, list, cancel, retry, wait, and live events that resume with
Last-Event-ID after a dropped connection. An error answer raises ApiError carrying the API's JSON body."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse, connect_sse

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


def _task_path(task_id: str, action: str = "") -> str:
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


def _event(sse_event: str, sse_id: str | None, text: str) -> TaskEvent | None:
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


def _create_body(task_type: str, payload: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any]:
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


def _list_params(status: str | Iterable[str] | None, task_type: str | Iterable[str] | None, limit: int,
                 cursor: str | None) -> dict[str, str]:
    params = {"limit": str(limit)}
    for key, value in (("status", status), ("type", task_type)):
        if value is not None:
            params[key] = value if isinstance(value, str) else ",".join(value)
    if cursor:
        params["cursor"] = cursor
    return params


def _page(body: Mapping[str, Any]) -> TaskPage:
    return TaskPage([TaskInfo.from_json(t) for t in body["tasks"]], body.get("nextCursor"),
                    dict(body.get("counts") or {}))


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"accept": "application/json", "user-agent": "bgtasks-client"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def _stream_target(task_id: str | None, status: str | Iterable[str] | None,
                   task_type: str | Iterable[str] | None, output: bool = False) -> tuple[str, dict[str, str]]:
    if task_id is not None:
        if output:  # the resource stream of one task: its states and its live output
            return "/api/events", {"taskId": task_id}
        return "/api/subscribeToTask", {"taskId": task_id}
    params = _list_params(status, task_type, 1, None)
    params.pop("limit")
    return "/api/events", params


def _ends_stream(event: TaskEvent, task_id: str | None) -> bool:
    if task_id is None:
        return False
    if event.type == "task":  # /api/events?taskId=: the task's final state
        return event.task is not None and event.task.id == task_id and event.task.finished
    return event.type in ("complete", "error", "timeout", "deleted")



class _Resumable:
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
        return _event(sse.event, sse.id, sse.data)

    def ends(self, event: TaskEvent) -> bool:
        return _ends_stream(event, self.task_id)

    def lost(self, exc: Exception) -> float:
        """The connection failed: how long to wait before reconnecting, or StreamLost after too many."""
        self.failures += 1
        if self.failures > RECONNECTS:
            raise StreamLost(f"lost the live stream from {self.base_url}: {exc}") from exc
        return min(2.0, 0.1 * 2**self.failures)


class Client:
    """Blocking client of one bgtasks service (any API process: they share the database)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 30.0,
                 http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.Client(base_url=self.base_url, headers=_headers(api_key), timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Any endpoint: its JSON body, or ApiError."""
        return answer(self.http.request(method, path, **kwargs))

    def create(self, task_type: str, payload: Mapping[str, Any] | None = None, *,
               idempotency_key: str | None = None, **options: Any) -> TaskInfo:
        """POST /api/tasks. Options: priority, max_retries, label, description, run_at, user_id, depends_on,
        project_id, project_name, project_path."""
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        body = self.request("POST", "/api/tasks", json=_create_body(task_type, payload, options), headers=headers)
        return TaskInfo.from_json(body["task"])

    def create_many(self, tasks: Iterable[tuple[str, Mapping[str, Any]]]) -> list[TaskInfo]:
        """POST /api/tasks/batch: (task type, payload) pairs, in one statement."""
        body = self.request("POST", "/api/tasks/batch",
                            json={"tasks": [_create_body(t, p, {}) for t, p in tasks]})
        return [TaskInfo.from_json(t) for t in body["tasks"]]

    def get(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(self.request("GET", _task_path(task_id))["task"])

    def list(self, *, status: str | Iterable[str] | None = None, task_type: str | Iterable[str] | None = None,
             limit: int = 100, cursor: str | None = None) -> TaskPage:
        return _page(self.request("GET", "/api/tasks", params=_list_params(status, task_type, limit, cursor)))

    def cancel(self, task_id: str, reason: str | None = None) -> TaskInfo:
        body = {"reason": reason} if reason else {}
        return TaskInfo.from_json(self.request("POST", _task_path(task_id, "cancel"), json=body)["task"])

    def retry(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(self.request("POST", _task_path(task_id, "retry"), json={})["task"])

    def events(self, task_id: str | None = None, *, status: str | Iterable[str] | None = None,
               task_type: str | Iterable[str] | None = None, last_event_id: str | None = None,
               output: bool = False) -> Iterator[TaskEvent]:
        """Live events: one task's (ends when it does) or every visible task's (`status`, `task_type`
        filters; runs until the caller stops). A dropped connection is resumed with Last-Event-ID.
        `output=True` with a task id: its `task` and `output` events (the model's text as it is written:
        `event.text`; the text so far first), from /api/events?taskId=."""
        return self._events(task_id, status, task_type, last_event_id, None, output)

    def _events(self, task_id: str | None, status: str | Iterable[str] | None,
                task_type: str | Iterable[str] | None, last_event_id: str | None,
                deadline: float | None, output: bool = False) -> Iterator[TaskEvent]:
        path, params = _stream_target(task_id, status, task_type, output)
        stream = _Resumable(self.base_url, task_id, last_event_id)
        while True:
            timeout = STREAM_TIMEOUT
            if deadline is not None:
                if (left := deadline - time.monotonic()) <= 0:
                    return
                timeout = httpx.Timeout(10.0, read=min(60.0, left))
            try:
                with connect_sse(self.http, "GET", path, params=params, headers=stream.headers(),
                                 timeout=timeout) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        answer(source.response)
                    for sse in source.iter_sse():
                        if (event := stream.take(sse)) is not None:
                            yield event
                            if stream.ends(event):
                                return
            except (httpx.TransportError, SSEError) as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                time.sleep(stream.lost(exc))

    def wait(self, task_id: str, timeout: float = 300.0) -> TaskInfo:
        """Block until the task is completed, failed or cancelled; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        task = self.get(task_id)
        while not task.finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {task.status} after {timeout:g}s")
            for event in self._events(task_id, None, None, None, deadline):
                if event.task is not None:
                    task = event.task
                if task.finished:
                    break
            task = self.get(task_id)
        return task


class AsyncClient:
    """The same calls as Client, for asyncio applications."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 30.0,
                 http: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.AsyncClient(base_url=self.base_url, headers=_headers(api_key), timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return answer(await self.http.request(method, path, **kwargs))

    async def create(self, task_type: str, payload: Mapping[str, Any] | None = None, *,
                     idempotency_key: str | None = None, **options: Any) -> TaskInfo:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        body = await self.request("POST", "/api/tasks", json=_create_body(task_type, payload, options),
                                  headers=headers)
        return TaskInfo.from_json(body["task"])

    async def create_many(self, tasks: Iterable[tuple[str, Mapping[str, Any]]]) -> list[TaskInfo]:
        body = await self.request("POST", "/api/tasks/batch",
                                  json={"tasks": [_create_body(t, p, {}) for t, p in tasks]})
        return [TaskInfo.from_json(t) for t in body["tasks"]]

    async def get(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json((await self.request("GET", _task_path(task_id)))["task"])

    async def list(self, *, status: str | Iterable[str] | None = None,
                   task_type: str | Iterable[str] | None = None, limit: int = 100,
                   cursor: str | None = None) -> TaskPage:
        return _page(await self.request("GET", "/api/tasks", params=_list_params(status, task_type, limit, cursor)))

    async def cancel(self, task_id: str, reason: str | None = None) -> TaskInfo:
        body = {"reason": reason} if reason else {}
        return TaskInfo.from_json((await self.request("POST", _task_path(task_id, "cancel"), json=body))["task"])

    async def retry(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json((await self.request("POST", _task_path(task_id, "retry"), json={}))["task"])

    async def events(self, task_id: str | None = None, *, status: str | Iterable[str] | None = None,
                     task_type: str | Iterable[str] | None = None, last_event_id: str | None = None,
                     output: bool = False) -> AsyncIterator[TaskEvent]:
        """As `Client.events` (`output=True`: a task's live output too)."""
        path, params = _stream_target(task_id, status, task_type, output)
        stream = _Resumable(self.base_url, task_id, last_event_id)
        while True:
            try:
                async with aconnect_sse(self.http, "GET", path, params=params, headers=stream.headers(),
                                        timeout=STREAM_TIMEOUT) as source:
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        answer(source.response)
                    async for sse in source.aiter_sse():
                        if (event := stream.take(sse)) is not None:
                            yield event
                            if stream.ends(event):
                                return
            except (httpx.TransportError, SSEError) as exc:
                await asyncio.sleep(stream.lost(exc))

    async def wait(self, task_id: str, timeout: float = 300.0) -> TaskInfo:  # noqa: ASYNC109 (the API names it)
        async def follow() -> TaskInfo:
            task = await self.get(task_id)
            while not task.finished:
                async for event in self.events(task_id):
                    if event.task is not None:
                        task = event.task
                    if task.finished:
                        break
                task = await self.get(task_id)
            return task

        try:
            return await asyncio.wait_for(follow(), timeout)
        except TimeoutError:
            raise TimeoutError(f"task {task_id} not finished after {timeout:g}s") from None
