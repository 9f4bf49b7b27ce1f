"""`bgtasks.Client` and `bgtasks.AsyncClient`: a web application's typed client of the HTTP API (httpx, and
httpx-sse for the live streams). Create, get, list, cancel, retry, wait, and live events that resume with
Last-Event-ID after a dropped connection. An error answer raises ApiError carrying the API's JSON body; what goes
over the wire (bodies, answers, events) is http_wire.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse, connect_sse

from .http_wire import (
    FINISHED,
    RECONNECTS,
    STREAM_TIMEOUT,
    ApiError,
    Resumable,
    StreamLost,
    TaskEvent,
    TaskInfo,
    TaskPage,
    answer,
    client_headers,
    create_body,
    list_params,
    stream_target,
    task_page,
    task_path,
)

# Re-exported: bgtasks/__init__.py, client.py and commands/ import these from here.
__all__ = ["FINISHED", "RECONNECTS", "STREAM_TIMEOUT", "ApiError", "AsyncClient", "Client", "StreamLost", "TaskEvent",
           "TaskInfo", "TaskPage", "answer"]


class Client:
    """Blocking client of one bgtasks service (any API process: they share the database)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 30.0,
                 http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.Client(base_url=self.base_url, headers=client_headers(api_key), timeout=timeout)

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
        body = self.request("POST", "/api/tasks", json=create_body(task_type, payload, options), headers=headers)
        return TaskInfo.from_json(body["task"])

    def create_many(self, tasks: Iterable[tuple[str, Mapping[str, Any]]]) -> list[TaskInfo]:
        """POST /api/tasks/batch: (task type, payload) pairs, in one statement."""
        body = self.request("POST", "/api/tasks/batch",
                            json={"tasks": [create_body(t, p, {}) for t, p in tasks]})
        return [TaskInfo.from_json(t) for t in body["tasks"]]

    def get(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(self.request("GET", task_path(task_id))["task"])

    def list(self, *, status: str | Iterable[str] | None = None, task_type: str | Iterable[str] | None = None,
             limit: int = 100, cursor: str | None = None) -> TaskPage:
        return task_page(self.request("GET", "/api/tasks", params=list_params(status, task_type, limit, cursor)))

    def cancel(self, task_id: str, reason: str | None = None) -> TaskInfo:
        body = {"reason": reason} if reason else {}
        return TaskInfo.from_json(self.request("POST", task_path(task_id, "cancel"), json=body)["task"])

    def retry(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(self.request("POST", task_path(task_id, "retry"), json={})["task"])

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
        path, params = stream_target(task_id, status, task_type, output)
        stream = Resumable(self.base_url, task_id, last_event_id)
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
        self.http = http or httpx.AsyncClient(base_url=self.base_url, headers=client_headers(api_key), timeout=timeout)

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
        body = await self.request("POST", "/api/tasks", json=create_body(task_type, payload, options),
                                  headers=headers)
        return TaskInfo.from_json(body["task"])

    async def create_many(self, tasks: Iterable[tuple[str, Mapping[str, Any]]]) -> list[TaskInfo]:
        body = await self.request("POST", "/api/tasks/batch",
                                  json={"tasks": [create_body(t, p, {}) for t, p in tasks]})
        return [TaskInfo.from_json(t) for t in body["tasks"]]

    async def get(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json((await self.request("GET", task_path(task_id)))["task"])

    async def list(self, *, status: str | Iterable[str] | None = None,
                   task_type: str | Iterable[str] | None = None, limit: int = 100,
                   cursor: str | None = None) -> TaskPage:
        return task_page(await self.request("GET", "/api/tasks", params=list_params(status, task_type, limit, cursor)))

    async def cancel(self, task_id: str, reason: str | None = None) -> TaskInfo:
        body = {"reason": reason} if reason else {}
        return TaskInfo.from_json((await self.request("POST", task_path(task_id, "cancel"), json=body))["task"])

    async def retry(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json((await self.request("POST", task_path(task_id, "retry"), json={}))["task"])

    async def events(self, task_id: str | None = None, *, status: str | Iterable[str] | None = None,
                     task_type: str | Iterable[str] | None = None, last_event_id: str | None = None,
                     output: bool = False) -> AsyncIterator[TaskEvent]:
        """As `Client.events` (`output=True`: a task's live output too)."""
        path, params = stream_target(task_id, status, task_type, output)
        stream = Resumable(self.base_url, task_id, last_event_id)
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
