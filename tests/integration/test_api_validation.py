"""Every bad input is a 4xx with a JSON body that names the field; never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.apiclient import Api, running_api


@pytest.fixture
async def api(database_url: str, tmp_path: Path):
    async with running_api(database_url, tmp_path, bgtasks_max_body_bytes=4096) as a:
        yield a


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"", 400, "body"),
    (b"{not json", 400, "body"),
    (b"[1, 2]", 400, "body"),
    (b'"text"', 400, "body"),
    (b"\xff\xfe", 400, "body"),
    (b'{"taskType": "noop", "payload": {"x": NaN}}', 400, "body"),
    (b'{"taskType": "noop", "payload": {"x": 1e999}}', 400, "body"),
    (b"[" * 1500 + b"]" * 1500, 400, "body"),
    (b'{"taskType": "nope"}', 422, "taskType"),
    (b'{"taskType": 7}', 422, "taskType"),
    (b'{}', 422, "taskType"),
    (b'{"taskType": "noop", "priority": "high"}', 422, "priority"),
    (b'{"taskType": "noop", "priority": 1001}', 422, "priority"),
    (b'{"taskType": "noop", "priority": true}', 422, "priority"),
    (b'{"taskType": "noop", "maxRetries": -1}', 422, "maxRetries"),
    (b'{"taskType": "noop", "maxRetries": 10000000000000000000000}', 422, "maxRetries"),
    (b'{"taskType": "noop", "runAt": "yesterday"}', 422, "runAt"),
    (b'{"taskType": "noop", "label": "\\u0000"}', 422, "label"),
    (b'{"taskType": "noop", "label": "\\ud800"}', 422, "label"),
    (b'{"taskType": "noop", "payload": {"k": "\\u0000"}}', 422, "payload.k"),
    (b'{"taskType": "noop", "payload": []}', 422, "payload"),
    (b'{"taskType": "sleep", "payload": {"seconds": -1}}', 422, "payload.seconds"),
    (b'{"taskType": "noop", "surprise": 1}', 422, "surprise"),
    (b'{"taskType": "noop", "description": "' + b"x" * 2001 + b'"}', 422, "description"),
])
async def test_create_rejects_bad_bodies(api: Api, body: bytes, status: int, field: str) -> None:
    auth = await api.key("alice")
    r = await api.client.post("/api/tasks", headers={**auth, "Content-Type": "application/json"}, content=body)
    assert r.status_code == status, r.text
    data = r.json()
    assert data["success"] is False and data["field"] == field and field.split(".")[-1] in data["error"]


@pytest.mark.parametrize(("url", "field"), [
    ("/api/tasks?limit=-1", "limit"),
    ("/api/tasks?limit=0", "limit"),
    ("/api/tasks?limit=1001", "limit"),
    ("/api/tasks?limit=abc", "limit"),
    ("/api/tasks?limit=99999999999999999999999", "limit"),
    ("/api/tasks?status=running", "status"),
    ("/api/tasks?type=nope", "type"),
    ("/api/tasks?sort=name", "sort"),
    ("/api/tasks?createdSince=soon", "createdSince"),
    ("/api/tasks?projectId=%00", "projectId"),
    ("/api/kiro/background-tasks?status=bogus", "status"),
    ("/api/kiro/background-tasks?limit=-3", "limit"),
    ("/api/getBackgroundTasks?limit=1e9", "limit"),
])
async def test_bad_query_parameters_name_the_field(api: Api, url: str, field: str) -> None:
    auth = await api.key("alice")
    r = await api.client.get(url, headers=auth)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


async def test_oversized_bodies_are_413(api: Api) -> None:
    auth = await api.key("alice")
    big = b'{"taskType": "noop", "label": "' + b"x" * 5000 + b'"}'
    r = await api.client.post("/api/tasks", headers=auth, content=big)
    assert r.status_code == 413 and r.json()["code"] == "too_large"

    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(10):
            yield b"x" * 1000

    r = await api.client.post("/api/tasks", headers=auth, content=chunks())
    assert r.status_code == 413 and r.json()["field"] == "body"


async def test_unknown_routes_and_methods_are_json(api: Api) -> None:
    auth = await api.key("alice")
    r = await api.client.get("/api/nothing-here", headers=auth)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await api.client.put("/api/tasks", headers=auth)
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = await api.client.get("/api/tasks/..%2F..%2Fetc", headers=auth)
    assert r.status_code == 404
    r = await api.client.get("/api/tasks/" + "x" * 500, headers=auth)
    assert r.status_code == 404 and r.json()["success"] is False


async def test_openapi_document_is_served(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/tasks", "/api/kiro/background-tasks", "/api/kiro/background-tasks/queue",
                 "/api/generateAIQuestions", "/api/getBackgroundTasks", "/api/tasks/{task_id}/cancel"):
        assert path in doc["paths"]
