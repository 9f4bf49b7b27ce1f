"""The OpenAPI document describes the streaming endpoints with every event type the code emits: the names are
read from the code that makes the events (service/hub*.py, service/api/events.py, streams.py, task_stream.py),
not from a copied list, and
messages built by that code validate against the document's schemas (no I/O)."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bgtasks import hub, hub_fanout, hub_subscriber
from bgtasks.api import events, openapi, streams, task_stream
from bgtasks.hub import Event

DOC = openapi.DOCUMENT
SCHEMAS = DOC["components"]["schemas"]


HUB = (hub, hub_fanout, hub_subscriber)  # the hub, split by job
WRITERS = (events, streams, task_stream)  # the stream writers


def _tree(*modules: Any) -> ast.Module:
    """The modules' code as one tree."""
    return ast.Module([n for m in modules for n in ast.parse(Path(m.__file__).read_text(encoding="utf-8")).body], [])


def _emitted_event_kinds() -> set[str]:
    """The names of the all-task streams' events: the first argument of every `Event("…", …)` the hub and the
    stream writers construct, every `sse_message(…, event="…")` frame and every `{"event": "…"}` message dict."""
    kinds = set()
    for module in (*HUB, *WRITERS):
        for node in ast.walk(_tree(module)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Event":
                first = node.args[0]
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), ast.unparse(node)
                kinds.add(first.value)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sse_message":
                kinds.update(
                    k.value.value
                    for k in node.keywords
                    if k.arg == "event" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
                )
    return kinds | _dict_values(WRITERS, "event")


def _dict_values(modules: tuple[Any, ...], key: str) -> set[str]:
    """The constant values of `key` in every dict literal of `module`, leaving out ASGI's own messages
    ({"type": "http.response.body"}, …: their types have dots, our messages' never do)."""
    found = set()
    for node in ast.walk(_tree(*modules)):
        if isinstance(node, ast.Dict):
            for k, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(k, ast.Constant)
                    and k.value == key
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                    and "." not in value.value
                ):
                    found.add(value.value)
    return found


def _seed_two_message_types() -> set[str]:
    """The `"type": "…"` of every message dict literal in the stream writers (only seed two's subscribeToTask
    messages have a `type`)."""
    return _dict_values(WRITERS, "type")


def _literal_ws_messages() -> set[str]:
    """Events the WebSocket writer sends as literal JSON text (the keep-alive)."""
    names = set()
    for node in ast.walk(_tree(*WRITERS)):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith('{"event":')
        ):
            try:
                names.add(json.loads(node.value)["event"])
            except ValueError:
                pass  # a template, not a whole message
    return names


def _deref(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return SCHEMAS[ref.removeprefix("#/components/schemas/")] if ref else schema


def _names(union: dict[str, Any], field: str) -> set[str]:
    variants = [_deref(v) for v in _deref(union)["oneOf"]]
    tags = [v["properties"][field]["enum"] for v in variants]
    assert all(len(t) == 1 for t in tags), tags
    names = {t[0] for t in tags}
    mapping = _deref(union)["discriminator"]["mapping"]
    assert set(mapping) == names and _deref(union)["discriminator"]["propertyName"] == field
    for name, ref in mapping.items():
        assert _deref({"$ref": ref})["properties"][field]["enum"] == [name]
    return names


def test_the_code_emits_what_this_test_reads() -> None:
    # The scans find the events docs/live-updates.md describes (a scan that finds nothing would pass below).
    assert {"task", "deleted", "queue", "ready", "dropped"} <= _emitted_event_kinds()
    assert {"update", "complete", "error", "timeout", "interrupted"} <= _seed_two_message_types()
    assert "keepalive" in _literal_ws_messages()


def test_events_stream_documents_every_emitted_event() -> None:
    op = DOC["paths"]["/api/events"]["get"]
    schema = op["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert _names(schema, "event") == _emitted_event_kinds()
    assert {p["name"] for p in op["parameters"]} >= {
        "status",
        "type",
        "userId",
        "lastEventId",
        "Last-Event-ID",
        "token",
    }


def test_websocket_documents_every_emitted_message() -> None:
    op = DOC["paths"]["/api/ws"]["get"]
    assert set(op["responses"]) == {"101"}
    messages = op["x-websocket"]["serverMessages"]
    assert _names(messages, "event") == _emitted_event_kinds() | _literal_ws_messages()


def test_subscribe_to_task_documents_every_message_type() -> None:
    op = DOC["paths"]["/api/subscribeToTask"]["get"]
    message = _deref(op["responses"]["200"]["content"]["text/event-stream"]["schema"])
    assert "event" not in message["properties"]  # seed two's messages are unnamed: EventSource.onmessage
    assert _names(message["properties"]["data"], "type") == _seed_two_message_types()
    assert {"400", "401", "404"} <= set(op["responses"])


# ---------------------------------------------------------------- messages the code builds fit the schemas

REGISTRY = Registry().with_resource(
    "urn:bgtasks", Resource.from_contents(DOC, default_specification=DRAFT202012)
)


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"urn:bgtasks#/components/schemas/{name}"}, registry=REGISTRY)


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _row(status: str, **extra: Any) -> dict[str, Any]:
    row = {
        "id": "task_1",
        "task_type": "sleep",
        "status": status,
        "priority": 0,
        "user_id": "alice",
        "project_id": None,
        "project_name": None,
        "project_path": None,
        "label": None,
        "description": None,
        "payload": {"seconds": 1},
        "progress": 40,
        "total": 100,
        "retry_count": 0,
        "max_retries": 3,
        "error_message": None,
        "result_data": None,
        "result": None,
        "run_at": NOW,
        "attempt": 1,
        "worker_id": "w1",
        "cancel_reason": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "change_seq": 7,
        "created_at": NOW,
        "updated_at": NOW,
        "started_at": NOW,
        "completed_at": None,
    }
    return {**row, **extra}


ALL_TASK_EVENTS = [
    Event("task", 7, "task_1", row=_row("processing")),
    Event("deleted", 8, "task_1", data={"id": "task_1"}),
    Event("queue", 8, data={"isActive": False, "maxConcurrentTasks": 3, "updatedAt": NOW.isoformat()}),
    Event("ready", 8, data={"lastEventId": 8}),
    Event("dropped", 8, data={"reason": "slow subscriber", "code": "slow_consumer", "lastEventId": 8}),
    Event("task", 9, "task_1", row=_row("completed", result=None), by_reference=("result",)),
]


@pytest.mark.parametrize(
    "event", ALL_TASK_EVENTS, ids=lambda e: e.kind + ("-by-reference" if e.by_reference else "")
)
def test_sse_and_websocket_messages_match_their_schemas(event: Event) -> None:
    seq = None if event.kind in ("queue", "dropped") else event.seq
    frame = events._sse_frame(seq, event).decode()
    fields = dict(line.split(": ", 1) for line in frame.strip().splitlines())
    message = {"event": fields["event"], "data": json.loads(fields["data"])}
    if "id" in fields:
        message["id"] = int(fields["id"])
    _validator("Event").validate(message)
    _validator("WebSocketMessage").validate(json.loads(events._ws_text(seq, event)))


def test_websocket_keepalive_matches_its_schema() -> None:
    for text in _literal_ws_messages():
        _validator("WebSocketMessage").validate({"event": text})


@pytest.mark.parametrize(
    "row",
    [
        _row("processing"),
        _row("completed", result={"ok": True}, completed_at=NOW),
        _row("error", error_message="boom"),
        _row("cancelled", cancel_reason="user"),
    ],
    ids=lambda r: r["status"],
)
def test_subscribe_to_task_messages_match_their_schema(row: dict[str, Any]) -> None:
    message, _ = task_stream._seed_message(Event("task", 7, "task_1", row=row))
    _validator("SubscribeToTaskEvent").validate({"id": 7, "data": message})


def test_a_deleted_task_and_the_timeout_match_their_schema() -> None:
    deleted, done = task_stream._seed_message(Event("deleted", 9, "task_1", data={"id": "task_1"}))
    assert done
    _validator("SubscribeToTaskEvent").validate({"id": 9, "data": deleted})
    _validator("TaskMessage").validate({"type": "timeout", "error": "Task monitoring timeout"})
    _validator("TaskMessage").validate({"type": "error", "error": "the API key was revoked"})  # no task
    _validator("TaskMessage").validate(
        {"type": "interrupted", "error": f"stream ended: {events.STREAM_FAILED}"}
    )
    with pytest.raises(Exception, match="is not valid"):
        _validator("TaskMessage").validate({"type": "finished", "task": {}})


def test_the_stream_filters_the_code_reads_are_documented_parameters() -> None:
    """Every query filter `_filter_from` (service/api/events.py) reads is a parameter of /api/events and /api/ws
    in /openapi.json (an alias may instead be named in its parameter's description, as `taskType` is)."""
    function = next(n for n in ast.walk(_tree(events)) if isinstance(n, ast.FunctionDef) and n.name == "_filter_from")
    read: set[str] = set()
    for node in ast.walk(function):
        if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            callee = ast.unparse(node.func)
            if callee in ("split", "q.get", "q.getlist"):
                read.add(node.args[0].value)
    assert {"status", "type", "userId", "taskId"} <= read, read
    for path in ("/api/events", "/api/ws"):
        parameters = DOC["paths"][path]["get"]["parameters"]
        names = {p["name"] for p in parameters}
        described = " ".join(p.get("description", "") for p in parameters)
        missing = {name for name in read if name not in names and f"`{name}`" not in described}
        assert not missing, f"{path} does not document {sorted(missing)}"
