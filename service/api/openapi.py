"""The OpenAPI 3.1 document served at /openapi.json, written by hand to match what the handlers accept and
return (tests/integration/test_api_fuzz.py runs schemathesis over it against the real app)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bgtasks.actors import payloads

from ..states import Status
from ..store.tasks import SORTS
from . import contract, replies
from . import validation as v
from .events import BY_REFERENCE_NAMES

S = dict[str, Any]

STATUSES = [s.value for s in Status]
STATUS_INPUT = "a status, or several separated by commas: " + ", ".join([*STATUSES, "failed"])


def _nullable(type_: str, **extra: Any) -> S:
    return {"type": [type_, "null"], **extra}


WAITING_REASONS = ["queue_stopped", "dependencies", "scheduled", "retry_backoff", "rate_limited", "no_worker",
                   "user_limit", "type_limit", "global_limit", "ready"]
WAITING_FOR: S = {
    "type": ["object", "null"],
    "description": "why a pending task is not running yet (SQL task_waiting_reason(), docs/waiting.md); null "
                   "unless pending",
    "required": ["reason", "text"],
    "properties": {
        "reason": {"enum": WAITING_REASONS}, "text": {"type": "string", "description": "the reason in words"},
        "runAt": {"type": "string", "format": "date-time"}, "count": {"type": "integer"},
        "taskIds": {"type": "array", "items": {"type": "string"}, "description": "dependencies not completed"},
        "running": {"type": "integer"}, "limit": {"type": "integer"}, "retry": {"type": "integer"},
        "maxRetries": {"type": "integer"}, "userId": {"type": "string"}, "taskType": {"type": "string"},
    },
}
LINKED_TASK: S = {"type": "object", "properties": {
    "id": {"type": "string"}, "status": {"enum": STATUSES}, "taskType": {"type": "string"},
    "label": _nullable("string")}}
ATTEMPT: S = {"type": "object", "properties": {
    "attempt": {"type": "integer"}, "workerId": _nullable("string"), "errorType": {"type": "string"},
    "errorMessage": {"type": "string"},
    "traceback": _nullable("string", description="the Python traceback (at most 16,384 characters)"),
    "outcome": {"enum": ["retried", "failed", "lease_expired", "rate_limited"]},
    "startedAt": _nullable("string", format="date-time"), "failedAt": {"type": "string", "format": "date-time"}}}


def _task_schema(seed_two: bool, resource: bool = False) -> S:
    statuses = [("failed" if s == "error" else s) for s in STATUSES] if seed_two else STATUSES
    time = _nullable("string", format="date-time")
    props: S = {
        "id": {"type": "string"}, "taskType": {"type": "string"}, "status": {"enum": statuses},
        "priority": {"type": "integer"}, "userId": {"type": "string"},
        "projectId": _nullable("string"), "projectName": _nullable("string"), "projectPath": _nullable("string"),
        "label": _nullable("string"), "description": _nullable("string"), "payload": {"type": "object"},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100}, "total": {"type": "integer"},
        "retryCount": {"type": "integer"}, "maxRetries": {"type": "integer"},
        "errorMessage": _nullable("string"), "resultData": {}, "result": {},
        "resultTruncated": {"type": "boolean", "description": "lists only: resultData/result is a preview "
                            "({truncated, keys, counts, summary}) of a large result; GET /api/tasks/{id} has it"},
        "runAt": {"type": "string", "format": "date-time"}, "attempt": {"type": "integer"},
        "workerId": _nullable("string"),
        "leaseExpiresAt": {**time, "description": "while processing: when its holder's lease runs out"},
        "cancelReason": _nullable("string"),
        "promptTokens": {"type": "integer"}, "completionTokens": {"type": "integer"},
        "seq": {"type": "integer", "description": "change number (SSE event id)"},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"}, "startedAt": time, "completedAt": time,
        "subscribeToken": {"type": "string", "description": "in create responses only: a read token for this "
                           "task (15 minutes), for a browser's EventSource (?token=)"},
    }
    if resource:
        props.update({
            "waitingFor": WAITING_FOR,
            "dependsOn": {"type": "array", "items": {"type": "string"},
                          "description": "GET /api/tasks/{id}: the tasks it depends on"},
            "dependents": {"type": "array", "items": {"type": "string"},
                           "description": "GET /api/tasks/{id}: the tasks that depend on it"},
        })
    if seed_two:
        props.update({
            "user_id": {"type": "string"}, "task_type": {"type": "string"},
            "created_at": {"type": "integer", "description": "epoch milliseconds"},
            "updated_at": {"type": "integer"}, "completed_at": _nullable("integer"),
        })
    return {"type": "object", "properties": props, "required": ["id", "taskType", "status", "progress"]}


def _counts(seed_two: bool = False) -> S:
    names = [("failed" if s == "error" else s) for s in STATUSES] if seed_two else STATUSES
    return {"type": "object", "properties": {n: {"type": "integer"} for n in [*names, "total"]},
            "required": [*names, "total"]}


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
ERROR: S = {
    "type": "object",
    "properties": {"success": {"const": False}, "error": {"type": "string"}, "field": _nullable("string"),
                   "code": {"type": "string"}},
    "required": ["success", "error", "code"],
}
TASK = {"$ref": "#/components/schemas/Task"}
SEED_ONE_TASK = {"$ref": "#/components/schemas/SeedOneTask"}
SEED_TWO_TASK = {"$ref": "#/components/schemas/SeedTwoTask"}
_ERRORS = {
    "400": "malformed body (not JSON, not an object)", "401": "no or bad credentials",
    "403": "not allowed (queue settings, processing and progress need a superuser)", "404": "no such task (or not yours)",
    "409": "the state machine refuses the change, or a per-user limit is reached (limit_reached)",
    "413": "body too large",
    "422": "a field is invalid (named in `field`)", "429": "over the creation rate limit (Retry-After)",
}


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


TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
LIMIT = _q("limit", {"type": "integer", "minimum": 1, "maximum": v.MAX_LIMIT}, "page size (default 100)")
FILTERS = [
    _q("status", {"type": "string"}, STATUS_INPUT),
    _q("type", {"type": "string"}, "task type(s), comma-separated"),
    _q("projectId", {"type": "string", "maxLength": 200}),
    _q("userId", {"type": "string", "maxLength": 200}, "superusers: any user; others: only themselves"),
    _q("createdSince", {"type": "string", "format": "date-time"}),
    _q("createdUntil", {"type": "string", "format": "date-time"}),
    _q("q", {"type": "string", "maxLength": 200}, "text in label or description"),
]
# The list's totals (api/tasks.py totals_for).
TOTALS: S = {
    "counts": {**_counts(), "description": "by status, under every filter but status (task_counts for the owner "
               "and type scopes; a project, creation range or search counts at most 50,000 rows)"},
    "matching": {"type": "integer", "minimum": 0, "description": "tasks matching every filter, status included"},
    "countsCapped": {"type": "boolean", "description": "a search stopped counting at 50,000 rows: the figures "
                     "are lower bounds"},
}
CREATE_PROPS: S = {
    "taskType": {"type": "string", "description": "a type a worker published (GET /api/task-types)"}, "payload": {"type": "object"},
    "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
    "maxRetries": {"type": "integer", "minimum": 0, "maximum": 100},
    "projectId": {"type": "string", "maxLength": 200}, "projectName": {"type": "string", "maxLength": 200},
    "projectPath": {"type": "string", "maxLength": 4096}, "label": {"type": "string", "maxLength": 200},
    "description": {"type": "string", "maxLength": 2000}, "runAt": {"type": "string", "format": "date-time"},
    "userId": {"type": "string", "maxLength": 200},
    "dependsOn": {"type": "array", "items": {"type": "string"}, "description": "ids of tasks it waits for"},
}
CREATE: S = {"type": "object", "properties": CREATE_PROPS, "required": ["taskType"],
             "additionalProperties": False}
STATUS_UPDATE_PROPS: S = {
    "status": {"enum": [*STATUSES, "failed"], "description": "processing: superusers only (it takes a lease)"},
    "errorMessage": _nullable("string"), "resultData": {},
    "progress": {"type": "integer", "minimum": 0, "maximum": 100,
                 "description": "superusers only: a running task's progress; extends the holder's lease"},
    "description": {"type": "string", "maxLength": 2000, "description": "superusers only, as progress"},
}
BULK: S = {
    "type": "object",
    "properties": {
        "ids": {"type": "array", "items": {"type": "string"}, "maxItems": v.MAX_BULK_IDS},
        "filter": {"type": "object", "properties": {
            "status": {"type": ["string", "array"]}, "type": {"type": ["string", "array"]},
            "projectId": {"type": "string"}, "userId": {"type": "string"},
            "createdSince": {"type": "string", "format": "date-time"},
            "createdUntil": {"type": "string", "format": "date-time"}, "q": {"type": "string"}},
            "additionalProperties": False},
        "reason": {"type": "string", "maxLength": 500},
    },
    "additionalProperties": False,
}
QUEUE_PATCH: S = {
    "type": "object",
    "properties": {
        "isActive": {"type": "boolean"}, "pollInterval": {"type": "integer", "minimum": 10, "maximum": 3_600_000},
        "maxConcurrentTasks": _nullable("integer", minimum=0, maximum=1_000_000),
        "retryBaseDelayMs": {"type": "integer", "minimum": 0, "maximum": 86_400_000},
        "retryMaxDelayMs": {"type": "integer", "minimum": 0, "maximum": 86_400_000},
    },
    "additionalProperties": False,
}
GENERATION: S = payloads.GENERATION

TASK_OK = _success({"task": TASK}, ["task"])
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
QUEUE_OK = _success({"queueSettings": QUEUE, "message": {"type": "string"}}, ["queueSettings"])
QUEUE_STATE = _success({"queueSettings": QUEUE, "taskCounts": _counts()}, ["queueSettings", "taskCounts"])



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
        "/api/tasks": {
            "get": _op("List tasks (filters, search, sort, cursor) with counts by status", "tasks",
                       _success({"tasks": {"type": "array", "items": TASK}, "nextCursor": _nullable("string"),
                                 **TOTALS}, ["tasks", "nextCursor", "counts"]),
                       params=[*FILTERS, _q("sort", {"enum": list(SORTS)}), _q("cursor", {"type": "string"}),
                               LIMIT]),
            "post": {**_op("Create a task (Idempotency-Key: a repeated key returns the first task, 200)",
                           "tasks", _success({"task": TASK, "created": {"type": "boolean"}}, ["task"]),
                           status="201", body=CREATE,
                           also={"200": _success({"task": TASK, "created": {"const": False}}, ["task"])}),
                     "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                     "schema": {"type": "string", "minLength": 1, "maxLength": 200}}]},
        },
        "/api/tasks/batch": {"post": _op(
            "Create up to 1000 tasks in one statement", "tasks",
            _success({"tasks": {"type": "array", "items": TASK}, "count": {"type": "integer"}}, ["tasks", "count"]),
            status="201",
            body={"type": "object", "required": ["tasks"], "additionalProperties": False, "properties": {
                "tasks": {"type": "array", "minItems": 1, "maxItems": v.MAX_BATCH, "items": {
                    **CREATE, "properties": {**CREATE_PROPS, "idempotencyKey": {"type": "string"}}}}}})},
        "/api/tasks/counts": {"get": _op(
            "The list's totals without a page: counts by status and matching, under the list's filters", "tasks",
            _success(TOTALS, ["counts", "matching", "countsCapped"]), params=FILTERS)},
        "/api/tasks/bulk/{action}": {"post": {**_op(
            "Cancel, retry or delete many tasks by ids and/or filter", "tasks",
            _success({"action": {"type": "string"}, "count": {"type": "integer"},
                      "ids": {"type": "array", "items": {"type": "string"}}, "more": {"type": "boolean"},
                      "skipped": {"type": "array", "items": {"type": "string"}}}, ["count", "ids"]),
            body=BULK), "parameters": [{"name": "action", "in": "path", "required": True,
                                        "schema": {"enum": ["cancel", "retry", "delete"]}}]}},
        "/api/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": _op("Read a task (also with a read token that names it: ?token=): the task with waitingFor, "
                       "dependsOn and dependents, its upstream and downstream tasks, its failed attempts with "
                       "their tracebacks, its model calls", "tasks",
                       _success({"task": TASK, "upstream": {"type": "array", "items": LINKED_TASK},
                                 "downstream": {"type": "array", "items": LINKED_TASK},
                                 "attempts": {"type": "array", "items": ATTEMPT},
                                 "modelCalls": {"type": "array", "items": {"type": "object"}}}, ["task"]),
                       params=[READ_TOKEN]),
            "patch": _op("Change a task's status (the state machine decides: 409 when illegal)", "tasks",
                         TASK_OK, body={"type": "object", "properties": STATUS_UPDATE_PROPS,
                                        "minProperties": 1, "additionalProperties": False}),
            "delete": _op("Delete a task", "tasks", _success({"deleted": {"type": "string"}}, ["deleted"])),
        },
        "/api/tasks/{task_id}/cancel": {"parameters": [TASK_ID], "post": _op(
            "Cancel a pending or processing task", "tasks", TASK_OK, body_required=False,
            body={"type": "object", "properties": {"reason": {"type": "string", "maxLength": 500}},
                  "additionalProperties": False})},
        "/api/tasks/{task_id}/retry": {"parameters": [TASK_ID], "post": _op(
            "Retry an error or cancelled task", "tasks", TASK_OK)},
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
        "/api/analytics": {"get": _op(
            "Counts, success rate, durations, queue wait, retries and tokens per user or type", "workflows",
            _success({"groups": {"type": "array", "items": {"type": "object"}}}, ["groups"]), params=[
                _q("since", {"type": "string", "format": "date-time"}),
                _q("until", {"type": "string", "format": "date-time"}),
                _q("groupBy", {"enum": ["user", "type"]}),
                _q("bucket", {"enum": ["minute", "hour"]},
                   "adds `series`: tasks finished per minute or hour (completed, failed, cancelled)"),
                _q("userId", {"type": "string", "maxLength": 200}, "superusers only")])},
        "/api/me": {"get": _op("Who the caller is", "accounts", _success(
            {"userId": {"type": "string"}, "isSuperuser": {"type": "boolean"}}, ["userId", "isSuperuser"]))},
        "/api/usage": {"get": _op("Model usage totals per user and task type", "usage", _success(
            {"usage": {"type": "array", "items": {"type": "object"}}}, ["usage"]), params=[
                _q("userId", {"type": "string", "maxLength": 200}, "superusers only"),
                _q("type", {"type": "string", "maxLength": 40}),
                _q("since", {"type": "string", "format": "date-time"}),
                _q("until", {"type": "string", "format": "date-time"})])},
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
                    LIMIT])},
        "/api/questions/{question_id}": {
            "parameters": [{"name": "question_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": _op("One quiz question", "questions", _success({"question": QUESTION}, ["question"])),
            "delete": _op("Delete a quiz question", "questions",
                          _success({"deleted": {"type": "integer"}}, ["deleted"])),
        },
        # ---- seed one
        "/api/kiro/background-tasks": {
            "get": _op("Seed one: list tasks with taskCounts", "seed one",
                       _success({"tasks": {"type": "array", "items": SEED_ONE_TASK}, "taskCounts": _counts()},
                                ["tasks", "taskCounts"]),
                       params=[_q("projectId", {"type": "string", "maxLength": 200}),
                               _q("status", {"type": "string"}, STATUS_INPUT), LIMIT]),
            "post": _op("Seed one: create a task", "seed one", _success({"task": SEED_ONE_TASK}, ["task"]),
                        body={**CREATE, "additionalProperties": True}),
            "put": _op("Seed one: update a task's status", "seed one", _success({"task": SEED_ONE_TASK}, ["task"]),
                       body={"type": "object", "required": ["taskId", "status"],
                             "properties": {"taskId": {"type": "string"}, **STATUS_UPDATE_PROPS}}),
            "delete": _op("Seed one: cancel, retry or delete a task, or clear completed tasks", "seed one",
                          _success({"message": {"type": "string"}, "task": SEED_ONE_TASK,
                                    "taskId": {"type": "string"}, "deletedCount": {"type": "integer"}}, []),
                          params=[_q("taskId", {"type": "string"}),
                                  _q("action", {"enum": ["cancel", "retry", "delete", "clear-completed"]}),
                                  _q("projectId", {"type": "string"}, "clear-completed: only this project")]),
        },
        "/api/kiro/background-tasks/queue": {
            "get": _op("Seed one: queue status (queueSettings.isActive)", "seed one", QUEUE_STATE),
            "post": _op("Seed one: start or stop the queue (superusers)", "seed one", QUEUE_OK,
                        body={"type": "object", "required": ["action"],
                              "properties": {"action": {"enum": ["start", "stop"]}}}),
        },
        # ---- seed two
        "/api/generateAIQuestions": {"post": {**_op(
            "Seed two: queue AI question generation; returns taskId at once", "seed two",
            _success({"taskId": {"type": "string"}, "task": SEED_TWO_TASK}, ["taskId"]), body=GENERATION),
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200}}]}},
        "/api/getBackgroundTasks": {"get": _op(
            "Seed two: a user's tasks (a superuser's without userId: everyone's)", "seed two",
            _success({"tasks": {"type": "array", "items": SEED_TWO_TASK}, "count": {"type": "integer"}},
                     ["tasks"]),
            params=[_q("userId", {"type": "string", "maxLength": 200}), LIMIT])},
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
            "schemas": {"Task": _task_schema(False, resource=True), "SeedTwoTask": _task_schema(True),
                        "SeedOneTask": {**_task_schema(False), "description": "Task plus seed one's column names"},
                        **components, **stream_schemas()},
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
