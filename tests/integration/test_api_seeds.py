"""Both seed documents' endpoints, driven with the exact request shapes the documents show, checking the
response fields their code reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.apiclient import Api, running_api


@pytest.fixture
async def api(database_url: str, tmp_path: Path):
    async with running_api(database_url, tmp_path) as a:
        yield a


# ---------------------------------------------------------------- seed one

async def test_seed_one_create_exactly_as_the_modal_does(api: Api) -> None:
    auth = await api.key("alice")
    path = api.project("my-project")
    # AIProjectReviewModal: Content-Type application/json, body projectId/projectPath/projectName/taskType/priority
    response = await api.client.post(
        "/api/kiro/background-tasks", headers={**auth, "Content-Type": "application/json"},
        json={"projectId": "my-project", "projectPath": path, "projectName": "My Project",
              "taskType": "docs", "priority": 1},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["success"] is True
    task = result["task"]
    assert task["status"] == "pending" and task["taskType"] == "docs" and task["priority"] == 1
    assert task["projectId"] == "my-project" and task["projectName"] == "My Project"
    assert task["task_type"] == "docs" and task["project_name"] == "My Project"  # seed one's column names
    assert task["maxRetries"] == 3 and task["retryCount"] == 0


async def test_seed_one_create_without_content_type_and_with_max_retries(api: Api) -> None:
    auth = await api.key("alice")
    # The "new way" example sends no Content-Type header at all.
    body = json.dumps({"projectId": "p", "projectPath": api.project(), "projectName": "P", "taskType": "code",
                       "priority": 0, "maxRetries": 5})
    response = await api.client.post("/api/kiro/background-tasks", headers=auth, content=body.encode())
    assert response.status_code == 200, response.text
    assert response.json()["task"]["maxRetries"] == 5


async def test_seed_one_list_filters_and_task_counts(api: Api) -> None:
    auth = await api.key("alice")
    for project, kind in (("a", "docs"), ("a", "goals"), ("b", "tasks")):
        r = await api.client.post("/api/kiro/background-tasks", headers=auth, json={
            "projectId": project, "projectPath": api.project(project), "projectName": project.upper(),
            "taskType": kind, "priority": 1})
        assert r.status_code == 200, r.text
    listed = (await api.client.get("/api/kiro/background-tasks", headers=auth)).json()
    assert listed["success"] is True and len(listed["tasks"]) == 3
    assert listed["taskCounts"] == {"pending": 3, "processing": 0, "completed": 0, "error": 0, "cancelled": 0,
                                    "total": 3}
    by_project = (await api.client.get("/api/kiro/background-tasks?projectId=a", headers=auth)).json()
    assert {t["taskType"] for t in by_project["tasks"]} == {"docs", "goals"}
    limited = (await api.client.get("/api/kiro/background-tasks?limit=1", headers=auth)).json()
    assert len(limited["tasks"]) == 1
    by_status = (await api.client.get("/api/kiro/background-tasks?status=completed", headers=auth)).json()
    assert by_status["tasks"] == []


async def _create(api: Api, auth: dict[str, str], kind: str = "goals") -> str:
    r = await api.client.post("/api/kiro/background-tasks", headers=auth, json={
        "projectId": "p", "projectPath": api.project(), "projectName": "P", "taskType": kind, "priority": 1})
    assert r.status_code == 200, r.text
    return r.json()["task"]["id"]


async def test_seed_one_put_status_update_and_illegal_moves(api: Api) -> None:
    auth = await api.key("processor", superuser=True)  # seed one's external processors hold a superuser key
    task_id = await _create(api, auth)
    # An external processor takes a pending task: legal.
    r = await api.client.put("/api/kiro/background-tasks", headers=auth,
                             json={"taskId": task_id, "status": "processing"})
    assert r.status_code == 200, r.text
    assert r.json()["task"]["status"] == "processing" and r.json()["task"]["startedAt"]
    r = await api.client.put("/api/kiro/background-tasks", headers=auth, json={
        "taskId": task_id, "status": "completed", "resultData": {"docs": ["README.md"]}})
    assert r.status_code == 200, r.text
    task = r.json()["task"]
    assert task["status"] == "completed" and task["resultData"] == {"docs": ["README.md"]}
    assert task["result"] == task["resultData"] and task["progress"] == 100
    # Completed is final.
    r = await api.client.put("/api/kiro/background-tasks", headers=auth,
                             json={"taskId": task_id, "status": "processing"})
    assert r.status_code == 409
    body = r.json()
    assert body["success"] is False and "completed" in body["error"] and body["code"] == "illegal_transition"
    # A cancelled task cannot be moved to processing either.
    other = await _create(api, auth)
    r = await api.client.delete(f"/api/kiro/background-tasks?taskId={other}&action=cancel", headers=auth)
    assert r.status_code == 200 and r.json()["task"]["status"] == "cancelled"
    r = await api.client.put("/api/kiro/background-tasks", headers=auth,
                             json={"taskId": other, "status": "processing"})
    assert r.status_code == 409 and "cancelled" in r.json()["error"]
    # error with errorMessage
    third = await _create(api, auth)
    r = await api.client.put("/api/kiro/background-tasks", headers=auth, json={
        "taskId": third, "status": "error", "errorMessage": "model said no"})
    assert r.status_code == 200 and r.json()["task"]["errorMessage"] == "model said no"
    r = await api.client.put("/api/kiro/background-tasks", headers=auth, json={"taskId": third, "status": "bogus"})
    assert r.status_code == 422 and r.json()["field"] == "status"


async def test_seed_one_delete_actions(api: Api) -> None:
    auth = await api.key("alice")
    a, b, c = [await _create(api, auth) for _ in range(3)]
    r = await api.client.delete(f"/api/kiro/background-tasks?taskId={a}&action=cancel", headers=auth)
    assert r.json()["success"] is True and r.json()["task"]["status"] == "cancelled"
    r = await api.client.delete(f"/api/kiro/background-tasks?taskId={a}&action=cancel", headers=auth)
    assert r.status_code == 409  # already cancelled
    r = await api.client.delete(f"/api/kiro/background-tasks?taskId={a}&action=retry", headers=auth)
    assert r.json()["success"] is True and r.json()["task"]["status"] == "pending"
    r = await api.client.delete(f"/api/kiro/background-tasks?taskId={b}&action=retry", headers=auth)
    assert r.status_code == 409  # pending: nothing to retry
    r = await api.client.delete(f"/api/kiro/background-tasks?taskId={b}&action=delete", headers=auth)
    assert r.json()["success"] is True
    assert (await api.client.get(f"/api/tasks/{b}", headers=auth)).status_code == 404
    await api.client.put("/api/kiro/background-tasks", headers=auth, json={"taskId": c, "status": "completed"})
    r = await api.client.delete("/api/kiro/background-tasks?action=clear-completed", headers=auth)
    assert r.json() == {"success": True, "deletedCount": 1, "message": "cleared 1 completed task(s)"}
    listed = (await api.client.get("/api/kiro/background-tasks", headers=auth)).json()
    assert [t["id"] for t in listed["tasks"]] == [a]
    assert listed["taskCounts"]["completed"] == 0 and listed["taskCounts"]["pending"] == 1
    r = await api.client.delete("/api/kiro/background-tasks?action=explode&taskId=x", headers=auth)
    assert r.status_code == 422 and r.json()["field"] == "action"
    r = await api.client.delete("/api/kiro/background-tasks?action=cancel", headers=auth)
    assert r.status_code == 422 and r.json()["field"] == "taskId"


async def test_seed_one_queue_start_stop_and_is_active(api: Api) -> None:
    root = await api.key("root", superuser=True)
    user = await api.key("alice")
    r = await api.client.post("/api/kiro/background-tasks/queue", headers={**root, "Content-Type": "application/json"},
                              json={"action": "stop"})
    assert r.status_code == 200 and r.json()["success"] is True
    result = (await api.client.get("/api/kiro/background-tasks/queue", headers=user)).json()
    assert result["queueSettings"]["isActive"] is False
    r = await api.client.post("/api/kiro/background-tasks/queue", headers=root, json={"action": "start"})
    assert r.json()["queueSettings"]["isActive"] is True
    # A plain user may read the queue status but not change it.
    r = await api.client.post("/api/kiro/background-tasks/queue", headers=user, json={"action": "stop"})
    assert r.status_code == 403 and r.json()["success"] is False


# ---------------------------------------------------------------- seed two

async def test_seed_two_generate_returns_task_id_at_once(api: Api) -> None:
    auth = await api.key("quiz@example.com")
    r = await api.client.post("/api/generateAIQuestions", headers=auth, json={
        "amount": 10, "category": "Historia", "ageGroup": "adults", "difficulty": "medium", "provider": "openai"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["taskId"].startswith("task_")
    task = body["task"]
    assert task["status"] == "pending" and task["description"] == "Genererar 10 frågor om Historia"
    assert task["payload"]["category"] == "Historia" and task["task_type"] == "generation"
    assert isinstance(task["created_at"], int)  # seed two's epoch milliseconds
    r = await api.client.post("/api/generateAIQuestions", headers=auth, json={"amount": 0, "category": "x"})
    assert r.status_code == 422 and r.json()["field"] == "amount"


async def test_seed_two_get_background_tasks_shows_failed(api: Api) -> None:
    auth = await api.key("quiz@example.com")
    r = await api.client.post("/api/generateAIQuestions", headers=auth, json={"amount": 3, "category": "Sport"})
    task_id = r.json()["taskId"]
    await api.client.put("/api/kiro/background-tasks", headers=auth,
                         json={"taskId": task_id, "status": "failed", "errorMessage": "API key not configured"})
    body = (await api.client.get("/api/getBackgroundTasks?userId=quiz@example.com", headers=auth)).json()
    assert body["success"] is True
    assert [(t["id"], t["status"]) for t in body["tasks"]] == [(task_id, "failed")]
    assert body["tasks"][0]["user_id"] == "quiz@example.com"
    # The resource API says error for the same task.
    assert (await api.client.get(f"/api/tasks/{task_id}", headers=auth)).json()["task"]["status"] == "error"
    assert (await api.client.get("/api/getBackgroundTasks?limit=0", headers=auth)).status_code == 422
    assert (await api.client.get("/api/getBackgroundTasks?limit=-5", headers=auth)).status_code == 422
    assert (await api.client.get("/api/getBackgroundTasks?limit=99999999", headers=auth)).status_code == 422


async def test_seed_two_superuser_sees_everyone_without_user_id(api: Api) -> None:
    root = await api.key("root", superuser=True)
    for user in ("a@x", "b@x"):
        h = await api.key(user)
        await api.client.post("/api/generateAIQuestions", headers=h, json={"amount": 1, "category": "c"})
    body = (await api.client.get("/api/getBackgroundTasks", headers=root)).json()
    assert sorted(t["user_id"] for t in body["tasks"]) == ["a@x", "b@x"]
    body = (await api.client.get("/api/getBackgroundTasks?userId=a@x", headers=root)).json()
    assert [t["user_id"] for t in body["tasks"]] == ["a@x"]


async def test_trusted_proxy_honours_x_user_email(database_url: str, tmp_path: Path) -> None:
    async with running_api(database_url, tmp_path, bgtasks_trusted_proxy=True) as api:
        r = await api.client.post("/api/generateAIQuestions", headers={"x-user-email": "p@x"},
                                  json={"amount": 1, "category": "c"})
        assert r.status_code == 200, r.text
        assert r.json()["task"]["user_id"] == "p@x"
    async with running_api(database_url, tmp_path) as api:  # not trusted: the header means nothing
        r = await api.client.post("/api/generateAIQuestions", headers={"x-user-email": "p@x"},
                                  json={"amount": 1, "category": "c"})
        assert r.status_code == 401
