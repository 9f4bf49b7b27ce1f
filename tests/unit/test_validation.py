"""Input checks without I/O: JSON bodies, typed fields, query parameters, cursors, task specs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pytest

from bgtasks.api import validation as v
from bgtasks.api.auth import Principal
from bgtasks.api.errors import BadRequest
from bgtasks.api.fields import Body, Int, Str
from bgtasks.api.requests import BulkBody, CreateBatch, CreateTask, ListQuery
from bgtasks.errors import Forbidden, TaskNotFound, ValidationFailed
from bgtasks.store.tasks import TaskSpec

ALICE = Principal("alice", False)


@pytest.mark.parametrize("raw", [b"", b"  ", b"nope", b"[]", b"1", b'{"a": NaN}', b'{"a": -Infinity}',
                                 b'{"a": 1e400}', b"\xc3\x28", b"[" * 3000])
def test_bodies_that_are_not_json_objects_are_400(raw: bytes) -> None:
    with pytest.raises(BadRequest) as err:
        v.parse_json_object(raw)
    assert err.value.field == "body"


def test_text_postgres_cannot_store_is_refused_with_its_field() -> None:
    with pytest.raises(ValidationFailed) as err:
        v.parse_json_object(b'{"payload": {"list": ["ok", "\\u0000"]}}')
    assert err.value.field == "payload.list[1]"
    with pytest.raises(ValidationFailed):
        v.parse_json_object(b'{"label": "\\udc00"}')


class Tuning(Body):
    poll_interval: Annotated[int | None, Int(0, 10)] = None
    label: Annotated[str | None, Str(5)] = None


def test_integers_are_bounded_and_never_booleans() -> None:
    assert Tuning.parse({"pollInterval": 5}).poll_interval == 5
    assert Tuning.parse({"pollInterval": 5.0}).poll_interval == 5
    for bad in (True, "5", 11, -1, 5.5, 10**30):
        with pytest.raises(ValidationFailed) as err:
            Tuning.parse({"pollInterval": bad})
        assert err.value.field == "pollInterval"
    with pytest.raises(ValidationFailed, match=r"^pollInterval: must be between 0 and 10$"):
        Tuning.parse({"pollInterval": 11})


def test_body_errors_name_the_field_in_the_sentences_of_the_error_body() -> None:
    with pytest.raises(ValidationFailed, match=r"^nope: unknown field; known fields: label, pollInterval$"):
        Tuning.parse({"label": 1, "nope": 1})  # unknown fields first
    with pytest.raises(ValidationFailed, match=r"^label: expected a string, got a number$"):
        Tuning.parse({"label": 1})
    with pytest.raises(ValidationFailed, match=r"^label: longer than 5 characters$"):
        Tuning.parse({"label": "abcdef"})
    with pytest.raises(ValidationFailed, match=r"^body: expected a JSON object, got an array$"):
        Tuning.parse([])
    with pytest.raises(ValidationFailed, match=r"^tasks\[1\]\.priority: must be between -1000 and 1000$"):
        CreateBatch.parse({"tasks": [{"taskType": "noop"}, {"taskType": "noop", "priority": 5000}]})
    with pytest.raises(ValidationFailed, match=r"^tasks\[1\]\.idempotencyKey: repeated within the batch$"):
        CreateBatch.parse({"tasks": [{"taskType": "noop", "idempotencyKey": "k"},
                                     {"taskType": "noop", "idempotencyKey": "k"}]})
    with pytest.raises(ValidationFailed, match=r"^filter\.q: expected a string$"):
        BulkBody.parse({"filter": {"q": 5}})


def test_query_limits() -> None:
    assert ListQuery.read({}).limit == 100
    assert ListQuery.read({"limit": "1000"}).limit == 1000
    for bad in ("0", "-1", "1001", "ten", "1e3", "9" * 40):
        with pytest.raises(ValidationFailed) as err:
            ListQuery.read({"limit": bad})
        assert err.value.field == "limit"


def test_statuses_accept_seed_two_failed() -> None:
    assert ListQuery.read({"status": "failed,pending"}).status == ["error", "pending"]
    with pytest.raises(ValidationFailed):
        ListQuery.read({"status": "running"})


def test_the_document_says_what_the_models_check() -> None:
    """/openapi.json takes each body's bounds from the model that validates it."""
    from bgtasks.api import openapi

    schema = openapi.DOCUMENT["components"]["schemas"]["CreateTask"]
    assert schema["properties"]["priority"] == {"type": "integer", "minimum": -1000, "maximum": 1000,
                                                "default": None}
    assert schema["additionalProperties"] is False and schema["required"] == ["taskType"]


def test_times_without_offset_are_utc() -> None:
    assert v.parse_time("2030-01-02T03:04:05", "runAt") == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert v.parse_time("2030-01-02T03:04:05Z", "runAt").tzinfo is not None
    with pytest.raises(ValidationFailed):
        v.parse_time("tomorrow", "runAt")


def test_cursor_round_trip_and_tampering() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    cursor = v.encode_cursor("-createdAt", when, "task_1")
    assert v.decode_cursor(cursor, "-createdAt") == (when, "task_1")
    with pytest.raises(ValidationFailed):
        v.decode_cursor(cursor, "-priority")  # made for another sort
    with pytest.raises(ValidationFailed):
        v.decode_cursor("!!!", "-createdAt")
    assert v.decode_cursor(v.encode_cursor("priority", 3, "t"), "priority") == (3, "t")


def test_task_ids_that_cannot_exist_are_not_found() -> None:
    assert v.check_task_id("task_abc") == "task_abc"
    for bad in ("", "a/b", "x" * 65, "\x00", "é"):
        with pytest.raises(TaskNotFound):
            v.check_task_id(bad)


def _spec(body: dict[str, Any], principal: Principal, roots: list[Path]) -> TaskSpec:
    return CreateTask.parse(body).spec(principal, roots)


def test_build_task_spec() -> None:
    spec = _spec({"taskType": "sleep", "payload": {"seconds": 1}, "priority": 3}, ALICE, [])
    assert (spec.task_type, spec.user_id, spec.priority, spec.max_retries) == ("sleep", "alice", 3, 3)
    with pytest.raises(ValidationFailed) as err:
        _spec({"taskType": "generation", "payload": {"amount": 999, "category": "x"}}, ALICE, [])
    assert err.value.field == "payload.amount"
    with pytest.raises(ValidationFailed) as err:
        _spec({"taskType": "docs", "projectId": "p", "projectName": "P"}, ALICE, [])
    assert err.value.field == "projectPath"
    with pytest.raises(ValidationFailed) as err:
        _spec({"taskType": "docs", "projectId": "p", "projectName": "P", "projectPath": "/etc"},
                          ALICE, [])
    assert err.value.field == "projectPath"
    with pytest.raises(Forbidden):
        _spec({"taskType": "noop", "userId": "bob"}, ALICE, [])
    root = Principal("root", True)
    assert _spec({"taskType": "noop", "userId": "bob"}, root, []).user_id == "bob"
