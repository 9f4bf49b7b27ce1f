"""The OpenAPI 3.1 document served at /openapi.json, written by hand to match what the handlers accept and
return (tests/integration/test_api_fuzz.py runs schemathesis over it against the real app)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ..states import Status
from . import contract, replies
from .events import BY_REFERENCE_NAMES

S = dict[str, Any]

STATUSES = [s.value for s in Status]
STATUS_INPUT = "a status, or several separated by commas: " + ", ".join([*STATUSES, "failed"])


def _nullable(type_: str, **extra: Any) -> S:
    return {"type": [type_, "null"], **extra}


QUESTION: S = {
    "type": "object",
    "required": ["id", "userId", "category", "ageGroup", "difficulty", "question", "options", "correctAnswer"],
    "properties": {
        "id": {"type": "integer"}, "userId": {"type": "string"}, "taskId": _nullable("string"),
        "category": {"type": "string"}, "ageGroup": {"type": "string"}, "difficulty": {"type": "string"},
        "question": {"type": "string"}, "options": {"type": "array", "items": {"type": "string"}},
        "correctAnswer": {"type": "string"}, "emoji": _nullable("string"), "explanation": _nullable("string"),
        "validation": {"type": ["object", "null"], "properties": {
            "verdict": {"enum": ["valid", "invalid", "uncertain"]}, "reason": _nullable("string"),
            "validatedAt": _nullable("string", format="date-time")}},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
    },
}

QUEUE: S = {
    "type": "object",
    "properties": {
        "isActive": {"type": "boolean"}, "pollInterval": {"type": "integer"},
        "maxConcurrentTasks": _nullable("integer"), "retryBaseDelayMs": {"type": "integer"},
        "retryMaxDelayMs": {"type": "integer"}, "lastPollAt": _nullable("string", format="date-time"),
        "createdAt": {"type": "string", "format": "date-time"}, "updatedAt": {"type": "string", "format": "date-time"},
    },
    "required": ["isActive", "pollInterval", "maxConcurrentTasks"],
}
TASK = {"$ref": "#/components/schemas/Task"}
SEED_ONE_TASK = {"$ref": "#/components/schemas/SeedOneTask"}
SEED_TWO_TASK = {"$ref": "#/components/schemas/SeedTwoTask"}
_ERRORS = contract.ERRORS
ERROR = contract.ERROR_REF
def _success(props: S, required: list[str]) -> S:
    return {"type": "object", "properties": {"success": {"const": True}, **props},
            "required": ["success", *required]}


def _op(summary: str, tag: str, ok: S, *, status: str = "200", params: list[S] | None = None,
        body: S | None = None, body_required: bool = True, also: dict[str, S] | None = None) -> S:
    responses: S = {status: {"description": "success", "content": {"application/json": {"schema": ok}}}}
    for code, schema in (also or {}).items():
        responses[code] = {"description": "success", "content": {"application/json": {"schema": schema}}}
    for code, text in _ERRORS.items():
        responses[code] = {"description": text, "content": {"application/json": {"schema": ERROR}}}
    op: S = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    return op


def _q(name: str, schema: S, description: str = "") -> S:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


WORKER = {"type": "object", "properties": {
    "workerId": {"type": "string", "description": "host:pid:nonce, as a task's workerId"},
    "hostname": {"type": "string"}, "pid": {"type": "integer"},
    "state": {"enum": ["live", "silent", "stopped"],
              "description": "silent: no heartbeat within worker_stale_after() and never stopped (crashed or cut off)"},
    "concurrency": {"type": "integer"}, "running": {"type": "integer", "description": "tasks processing under it now"},
    "taskTypes": {"type": "array", "items": {"type": "string"}, "description": "published types (empty: any type)"},
    "startedAt": {"type": "string", "format": "date-time"}, "heartbeatAt": {"type": "string", "format": "date-time"},
    "heartbeatAgeSeconds": {"type": "number", "description": "by the database's clock"},
    "stoppedAt": {"type": ["string", "null"], "format": "date-time"},
}}
SCHEDULE: S = {"type": "object", "properties": {
    "name": {"type": "string"}, "taskType": {"type": "string"}, "cron": {"type": "string"},
    "timezone": {"type": "string"}, "enabled": {"type": "boolean"}, "catchUp": {"enum": ["skip", "once"]}},
    "required": ["name", "taskType", "cron"]}
SCHEDULE_BODY: S = {"type": "object", "properties": {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,100}$"}, "taskType": {"type": "string"},
    "payload": {"type": "object"}, "cron": {"type": "string", "maxLength": 200},
    "timezone": {"type": "string", "maxLength": 100}, "enabled": {"type": "boolean"},
    "catchUp": {"enum": ["skip", "once"]}, "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
    "maxRetries": {"type": "integer", "minimum": 0, "maximum": 100}, "label": {"type": "string", "maxLength": 200},
    "userId": {"type": "string", "maxLength": 200}},
    "required": ["name", "taskType", "cron"], "additionalProperties": False}
READ_TOKEN = _q("token", {"type": "string"}, "a read token (POST /api/tokens, or subscribeToken) instead of a key")
# ---- the streaming endpoints (docs/live-updates.md). OpenAPI 3.1 has no notion of a stream of messages, so a
# text/event-stream response's schema describes ONE message, {event, id, data} as the SSE fields (data parsed
# as JSON), a oneOf with a discriminator on the name, as client generators for SSE read it. The WebSocket
# (no WebSocket in OpenAPI either) is a GET answered 101, its messages in the `x-websocket` extension.


def _ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


def _tag(name: str) -> S:
    """A message's name field: a one-value enum (what renderers and generators read; several ignore const)."""
    return {"type": "string", "enum": [name]}


def _message(name: str | None, data: S, *, with_id: bool, description: str) -> S:
    props: S = {"data": data}
    if name is not None:
        props = {"event": _tag(name), **props}
    if with_id:
        props["id"] = {"type": "integer", "description": "change number: send it back as Last-Event-ID"}
    required = [*(["event"] if name is not None else []), "data", *(["id"] if with_id else [])]
    return {"type": "object", "description": description, "properties": props, "required": required}


# The events of /api/events and /api/ws, by their SSE `event:` name (the WebSocket's "event").
STREAM_EVENTS: dict[str, S] = {
    "ready": _message("ready", {"type": "object", "properties": {"lastEventId": {"type": "integer"}},
                                "required": ["lastEventId"]}, with_id=True,
                      description="sent first (after any Last-Event-ID replay): from here on everything is live"),
    "task": _message("task", {"allOf": [TASK, {"type": "object", "properties": {
        "byReference": {"type": "array", "items": {"enum": sorted(BY_REFERENCE_NAMES.values())},
                        "description": "fields too large to send inline (BGTASKS_STREAM_INLINE_BYTES): null here"},
        "href": {"type": "string", "description": "where to GET the whole task, when byReference is present"}}}]},
        with_id=True, description="a task changed: its latest state"),
    "deleted": _message("deleted", {"type": "object", "properties": {"id": {
        "type": "string", "description": "the deleted task's id; \"*\" after a TRUNCATE"}}, "required": ["id"]},
        with_id=True, description="a task was deleted"),
    "output": _message("output", {"type": "object", "properties": {
        "id": {"type": "string"}, "attempt": {"type": "integer", "description": "a new number: a retry started over"},
        "text": {"type": "string", "description": "what the model wrote since this task's previous output event"}},
        "required": ["id", "attempt", "text"]},
        with_id=True, description="a running task's model call wrote more text (docs/live-updates.md)"),
    "queue": _message("queue", {"type": "object", "properties": QUEUE["properties"]}, with_id=False,
                      description="the queue settings changed (superusers' streams only)"),
    "dropped": _message("dropped", {"type": "object", "properties": {
        "reason": {"type": "string"}, "lastEventId": {"type": "integer"},
        "code": {"type": ["string", "null"], "description": "slow_consumer, shutdown or server_error: reconnect with "
                 "lastEventId; revoked or expired: the credential ended (reconnecting with it is a 401)"}},
        "required": ["reason", "lastEventId"]},
        with_id=False, description="this stream is closed by the server; `code` says why"),
}
WS_ONLY_EVENTS: dict[str, S] = {
    "keepalive": {"type": "object", "description": "sent when the stream is idle (SSE sends a comment instead)",
                  "properties": {"event": _tag("keepalive")}, "required": ["event"]},
}
# Seed two's /api/subscribeToTask: unnamed messages whose JSON `data` has a `type`.
SEED_TWO_TASK_OR_DELETED: S = {"oneOf": [SEED_TWO_TASK, {
    "type": "object", "properties": {"id": {"type": "string"}, "status": {"const": "deleted"}},
    "required": ["id", "status"]}]}
TASK_MESSAGES: dict[str, S] = {
    "update": {"description": "the current state at once on connect, then every change while pending or processing",
               "properties": {"task": SEED_TWO_TASK}, "required": ["task"]},
    "complete": {"description": "the task completed (task.result holds the result); the stream then closes",
                 "properties": {"task": SEED_TWO_TASK}, "required": ["task"]},
    "error": {"description": "the task failed (\"failed\"), was cancelled (error \"cancelled: <reason>\"), was "
                             "deleted (error \"task deleted\"), or the caller's credential ended (no task); the "
                             "stream then closes",
              "properties": {"error": {"type": "string"}, "task": SEED_TWO_TASK_OR_DELETED},
              "required": ["error"]},
    "timeout": {"description": "BGTASKS_SSE_TIMEOUT_S passed (default 300 s); the stream then closes",
                "properties": {"error": {"const": "Task monitoring timeout"}}, "required": ["error"]},
    "interrupted": {"description": "an error inside the server ended the stream (not the task's failure): "
                                   "EventSource reconnects and is sent the task's current state",
                    "properties": {"error": {"type": "string"}}, "required": ["error"]},
}


def _schema_name(prefix: str, name: str) -> str:
    return prefix + name[:1].upper() + name[1:]


def _one_of(prefix: str, names: list[str], on: str) -> S:
    return {"oneOf": [_ref(_schema_name(prefix, n)) for n in names],
            "discriminator": {"propertyName": on,
                              "mapping": {n: f"#/components/schemas/{_schema_name(prefix, n)}" for n in names}}}


def stream_schemas() -> S:
    """The components the streaming endpoints refer to: one schema per message type, and their unions."""
    out: S = {_schema_name("Event", n): m for n, m in STREAM_EVENTS.items()}
    out.update({_schema_name("Event", n): m for n, m in WS_ONLY_EVENTS.items()})
    out["Event"] = _one_of("Event", list(STREAM_EVENTS), "event")
    out["WebSocketMessage"] = _one_of("Event", [*STREAM_EVENTS, *WS_ONLY_EVENTS], "event")
    for name, body in TASK_MESSAGES.items():
        out[_schema_name("TaskMessage", name)] = {
            "type": "object", "description": body["description"],
            "properties": {"type": _tag(name), **body["properties"]}, "required": ["type", *body["required"]]}
    out["TaskMessage"] = _one_of("TaskMessage", list(TASK_MESSAGES), "type")
    out["SubscribeToTaskEvent"] = _message(None, _ref("TaskMessage"), with_id=True,
                                           description="one SSE message of /api/subscribeToTask (no event name)")
    return out


def _stream_errors() -> S:
    # Answered as JSON before any stream starts, like every other endpoint.
    texts = {"400": "a query parameter or Last-Event-ID is invalid (named in `field`)", "401": _ERRORS["401"],
             "404": "no such task (or not yours): subscribeToTask only",
             "429": "too many open streams for this user (BGTASKS_MAX_STREAMS_PER_USER; Retry-After)"}
    return {code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
            for code, text in texts.items()}


EVENT_FILTERS = [
    _q("status", {"type": "string"}, STATUS_INPUT + "; a change is sent when the new or the previous status matches"),
    _q("type", {"type": "string"}, "task type(s), comma-separated (also `taskType`)"),
    _q("projectId", {"type": "string"}),
    _q("userId", {"type": "string"}, "superusers: one user's tasks; others always see only their own"),
    _q("taskId", {"type": "string"}, "task id(s), comma-separated or repeated: only those tasks' stream (within a "
       "read token's), starting with their current states; no `queue` events"),
    _q("lastEventId", {"type": "integer", "minimum": 0},
       "resume after this change number (EventSource cannot set the Last-Event-ID header on its first connect)"),
]
LAST_EVENT_ID = {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "integer", "minimum": 0},
                 "description": "resume: first the latest state of every task changed since, then `ready`"}
SSE_NOTE = ("Idle streams send a `: keepalive` comment every BGTASKS_SSE_KEEPALIVE_S (default 15 s). "
            "See docs/live-updates.md.")


def stream_paths() -> S:
    events_stream = {"content": {"text/event-stream": {"schema": _ref("Event")}}}
    return {
        "/api/subscribeToTask": {"get": {
            "summary": "Seed two: follow one task over Server-Sent Events until it ends", "tags": ["live updates"],
            "description": "`data:` messages (no `event:` name, so EventSource.onmessage sees them all) of type "
                           "update, complete, error or timeout; closed after the terminal one. " + SSE_NOTE,
            "parameters": [{"name": "taskId", "in": "query", "required": True, "schema": {"type": "string"}},
                           READ_TOKEN],
            "responses": {"200": {"description": "an event stream; the schema is one message",
                                  "content": {"text/event-stream": {"schema": _ref("SubscribeToTaskEvent")}}},
                          **_stream_errors()}}},
        "/api/events": {"get": {
            "summary": "Every task the caller may see, over Server-Sent Events (resumable)", "tags": ["live updates"],
            "description": "Named events (`event:` ready, task, deleted, queue, dropped) with the change number as "
                           "`id:`; starts with `retry: 2000`. " + SSE_NOTE,
            "parameters": [*EVENT_FILTERS, READ_TOKEN, LAST_EVENT_ID],
            "responses": {"200": {"description": "an event stream; the schema is one message", **events_stream},
                          **_stream_errors()}}},
        "/api/ws": {"get": {
            "summary": "The events of /api/events over a WebSocket", "tags": ["live updates"],
            "description": "A WebSocket upgrade (OpenAPI has no WebSocket: the messages are in `x-websocket`). "
                           "One JSON text message per event, {event, id, data}, as /api/events; "
                           "{\"event\": \"keepalive\"} when idle. The server reads nothing from the client. A refusal "
                           "before the upgrade is the HTTP status and JSON body of /api/events where the server "
                           "supports denial responses, else close code 4000 + that status.",
            "parameters": [*EVENT_FILTERS, READ_TOKEN, {"name": "Upgrade", "in": "header", "required": True,
                                            "schema": {"const": "websocket"}}],
            "responses": {"101": {"description": "Switching Protocols: the WebSocket is open"}},
            "x-websocket": {
                "serverMessages": _ref("WebSocketMessage"),
                "closeCodes": {
                    "1013": "dropped (fell behind, or the server stops): reconnect with the dropped message's lastEventId",
                    "1011": "dropped after an error inside the server: reconnect the same way",
                    "4401": "no or bad credentials, or the credential ended (revoked, expired)",
                    "4400": "bad query parameters", "4429": "too many open streams for this user"}}}},
    }


def build(routes: Sequence[BaseRoute]) -> S:
    """The document: each route whose handler declares its contract (@operation) is derived from it; the
    others are described by hand below until they do."""
    operations = [(r.path, method.lower(), op) for r in routes if isinstance(r, Route)
                  for method in sorted(r.methods or ()) if method != "HEAD"
                  if (op := contract.operation_of(r.endpoint)) is not None]
    refs, components = contract.schemas([op for *_, op in operations], [replies.Error])
    paths: S = {
        "/api/schedules": {
            "get": _op("List schedules (own; superusers: all)", "workflows",
                       _success({"schedules": {"type": "array", "items": SCHEDULE}}, ["schedules"])),
            "post": _op("Create a cron schedule", "workflows", _success({"schedule": SCHEDULE}, ["schedule"]),
                        status="201", body=SCHEDULE_BODY),
        },
        "/api/schedules/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                           _q("userId", {"type": "string", "maxLength": 200},
                              "superusers: the owner (names are unique per owner)")],
            "get": _op("Read a schedule", "workflows", _success({"schedule": SCHEDULE}, ["schedule"])),
            "patch": _op("Change a schedule", "workflows", _success({"schedule": SCHEDULE}, ["schedule"]),
                         body={**SCHEDULE_BODY, "required": []}),
            "delete": _op("Delete a schedule", "workflows", _success({}, [])),
        },
        "/api/schedules/{name}/run": {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                           _q("userId", {"type": "string", "maxLength": 200},
                              "superusers: the owner (names are unique per owner)")],
            "post": _op("Run a schedule now: one task of it at once, outside its cron (next and last run "
                        "unchanged); counts against the creation rate", "workflows",
                        _success({"task": TASK, "schedule": {"type": "string"}}, ["task", "schedule"]),
                        status="201", body={"type": "object", "properties": {}, "additionalProperties": False},
                        body_required=False),
        },
        "/api/workers": {"get": _op(
            "Superusers: worker processes (live, silent, stopped recently) with concurrency, tasks running now, "
            "served types and last heartbeat", "queue",
            _success({"workers": {"type": "array", "items": WORKER}, "totals": {"type": "object"}},
                     ["workers", "totals"]), params=[
                _q("stoppedWithin", {"type": "integer", "minimum": 0, "maximum": 604800},
                   "also workers stopped in the last this many seconds (default 3600)"),
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 200")])},
        "/api/analytics": {"get": _op(
            "Counts, success rate, durations, queue wait, retries and tokens per user or type", "workflows",
            _success({"groups": {"type": "array", "items": {"type": "object"}}}, ["groups"]), params=[
                _q("since", {"type": "string", "format": "date-time"}),
                _q("until", {"type": "string", "format": "date-time"}),
                _q("groupBy", {"enum": ["user", "type"]}),
                _q("bucket", {"enum": ["minute", "hour"]},
                   "adds `series`: tasks finished per minute or hour (completed, failed, cancelled)"),
                _q("userId", {"type": "string", "maxLength": 200}, "superusers only")])},
        "/api/questions": {"get": _op(
            "Quiz questions of the caller (a superuser's: everyone's), newest first", "questions",
            _success({"questions": {"type": "array", "items": QUESTION}, "nextCursor": _nullable("string")},
                     ["questions", "nextCursor"]),
            params=[_q("category", {"type": "string", "maxLength": 200}, "exact, any case"),
                    _q("difficulty", {"enum": ["easy", "medium", "hard"]}),
                    _q("ageGroup", {"enum": ["children", "youth", "adults"]}),
                    _q("taskId", {"type": "string", "maxLength": 64}, "the generation task that made them"),
                    _q("userId", {"type": "string", "maxLength": 200}, "superusers only"),
                    _q("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"}, "the previous page's nextCursor"),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000})])},
        "/api/questions/{question_id}": {
            "parameters": [{"name": "question_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": _op("One quiz question", "questions", _success({"question": QUESTION}, ["question"])),
            "delete": _op("Delete a quiz question", "questions",
                          _success({"deleted": {"type": "integer"}}, ["deleted"])),
        },
        **stream_paths(),
    }
    for path, method, op in operations:
        paths.setdefault(path, {})[method] = contract.path_item(path, op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bgtasks", "version": "1",
                 "description": "Background AI tasks: the resource API, and both seed documents' endpoints. "
                                "Errors are {success: false, error, field, code}. See docs/api.md."},
        "paths": paths,
        "components": {
            "schemas": {**components, **stream_schemas()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an API key from `bgtasks keys create`"}},
        },
        "security": [{"bearer": []}],
    }


@functools.cache
def document() -> S:
    from .app import ROUTES  # the routes table imports this module's handler

    return build(ROUTES)


def __getattr__(name: str) -> Any:
    if name == "DOCUMENT":  # built on first use: the routes table is defined after this module
        return document()
    raise AttributeError(name)


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document())
