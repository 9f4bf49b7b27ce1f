"""Input checks without I/O: JSON bodies, typed fields, query parameters, cursors, task specs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bgtasks.api import validation as v
from bgtasks.api.auth import Principal
from bgtasks.api.errors import BadRequest
from bgtasks.errors import Forbidden, TaskNotFound, ValidationFailed

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


def test_integers_are_bounded_and_never_booleans() -> None:
    assert v.get_int({"p": 5}, "p", 0, 10) == 5
    assert v.get_int({"p": 5.0}, "p", 0, 10) == 5
    for bad in (True, "5", 11, -1, 5.5, 10**30):
        with pytest.raises(ValidationFailed):
            v.get_int({"p": bad}, "p", 0, 10)


def test_query_limits() -> None:
    assert v.q_limit({}) == 100
    assert v.q_limit({"limit": "1000"}) == 1000
    for bad in ("0", "-1", "1001", "ten", "1e3", "9" * 40):
        with pytest.raises(ValidationFailed) as err:
            v.q_limit({"limit": bad})
        assert err.value.field == "limit"


def test_statuses_accept_seed_two_failed() -> None:
    assert v.q_statuses({"status": "failed,pending"}) == ["error", "pending"]
    with pytest.raises(ValidationFailed):
        v.q_statuses({"status": "running"})


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


def test_build_task_spec() -> None:
    spec = v.build_task_spec({"taskType": "sleep", "payload": {"seconds": 1}, "priority": 3}, ALICE, [])
    assert (spec.task_type, spec.user_id, spec.priority, spec.max_retries) == ("sleep", "alice", 3, 3)
    with pytest.raises(ValidationFailed) as err:
        v.build_task_spec({"taskType": "generation", "payload": {"amount": 999, "category": "x"}}, ALICE, [])
    assert err.value.field == "payload.amount"
    with pytest.raises(ValidationFailed) as err:
        v.build_task_spec({"taskType": "docs", "projectId": "p", "projectName": "P"}, ALICE, [])
    assert err.value.field == "projectPath"
    with pytest.raises(ValidationFailed) as err:
        v.build_task_spec({"taskType": "docs", "projectId": "p", "projectName": "P", "projectPath": "/etc"},
                          ALICE, [])
    assert err.value.field == "projectPath"
    with pytest.raises(Forbidden):
        v.build_task_spec({"taskType": "noop", "userId": "bob"}, ALICE, [])
    root = Principal("root", True)
    assert v.build_task_spec({"taskType": "noop", "userId": "bob"}, root, []).user_id == "bob"
