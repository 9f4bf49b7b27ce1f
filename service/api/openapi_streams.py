"""The streaming endpoints in /openapi.json (docs/live-updates.md), the one part written by hand: OpenAPI 3.1
has no notion of a stream of messages, so a text/event-stream response's schema describes ONE message, {event,
id, data} as the SSE fields (data parsed as JSON), a oneOf with a discriminator on the name, as client
generators for SSE read it. The WebSocket (no WebSocket in OpenAPI either) is a GET answered 101, its messages in
the `x-websocket` extension. Tasks and queue settings are the reply models'
(service/api/replies.py)."""

from __future__ import annotations

from typing import Any

from .contract import ERROR_REF, ERRORS
from .events import BY_REFERENCE_NAMES
from .replies import QueueSettings
from .requests import STATUS_INPUT

S = dict[str, Any]
ERROR = ERROR_REF
TASK = {"$ref": "#/components/schemas/Task"}
SEED_TWO_TASK = {"$ref": "#/components/schemas/SeedTwoTask"}
# A queue event carries the settings that changed: QueueSettings' fields, none of them required.
QUEUE_CHANGE: S = {"type": "object", "properties": QueueSettings.model_json_schema(by_alias=True)["properties"]}


def _q(name: str, schema: S, description: str = "") -> S:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


READ_TOKEN = _q("token", {"type": "string"}, "a read token (POST /api/tokens, or subscribeToken) instead of a key")

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
    "queue": _message("queue", QUEUE_CHANGE, with_id=False,
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
    texts = {"400": "a query parameter or Last-Event-ID is invalid (named in `field`)", "401": ERRORS["401"],
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
