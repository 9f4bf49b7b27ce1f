"""Accounts: API keys (created and revoked by the CLI too), dev mode on loopback, and isolation: user A
cannot list, read, cancel, retry, delete or subscribe to user B's tasks by any path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.apiclient import Api, running_api


@pytest.fixture
async def api(database_url: str, tmp_path: Path):
    async with running_api(database_url, tmp_path) as a:
        yield a


async def test_requests_without_credentials_are_refused(api: Api) -> None:
    r = await api.client.get("/api/tasks")
    assert r.status_code == 401 and r.json()["success"] is False and r.headers["www-authenticate"] == "Bearer"
    r = await api.client.get("/api/tasks", headers={"Authorization": "Bearer bgt_not_a_key"})
    assert r.status_code == 401
    r = await api.client.get("/api/tasks", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401


async def test_dev_mode_on_loopback_acts_as_local_superuser(database_url: str, tmp_path: Path) -> None:
    async with running_api(database_url, tmp_path, client_host="127.0.0.1", bgtasks_dev=True,
                           base_url="http://127.0.0.1:8000") as api:
        r = await api.client.post("/api/tasks", json={"taskType": "noop"})
        assert r.status_code == 201 and r.json()["task"]["userId"] == "local"
        assert (await api.client.post("/api/queue/stop")).status_code == 200
        # A bad key is refused even here.
        r = await api.client.get("/api/tasks", headers={"Authorization": "Bearer bgt_wrong"})
        assert r.status_code == 401
    # Same settings, a request from another address: credentials required.
    async with running_api(database_url, tmp_path, client_host="192.0.2.7", bgtasks_dev=True) as api:
        assert (await api.client.get("/api/tasks")).status_code == 401
    # Bound to a public address: never dev mode, even from loopback.
    async with running_api(database_url, tmp_path, client_host="127.0.0.1", bgtasks_dev=True,
                           bgtasks_host="0.0.0.0") as api:
        assert (await api.client.get("/api/tasks")).status_code == 401


async def test_user_a_cannot_reach_user_b_tasks_by_any_path(api: Api) -> None:
    a = await api.key("alice")
    b = await api.key("bob")
    root = await api.key("root", superuser=True)
    r = await api.client.post("/api/kiro/background-tasks", headers=b, json={
        "projectId": "bp", "projectName": "B", "projectPath": api.project("b"), "taskType": "docs", "priority": 1})
    theirs = r.json()["task"]["id"]
    r = await api.client.post("/api/generateAIQuestions", headers=b, json={"amount": 1, "category": "c"})
    theirs2 = r.json()["taskId"]
    await api.client.put("/api/kiro/background-tasks", headers=b, json={"taskId": theirs2, "status": "completed"})

    lists = [
        "/api/tasks", "/api/tasks?userId=bob", "/api/tasks?projectId=bp", "/api/kiro/background-tasks",
        "/api/kiro/background-tasks?projectId=bp", "/api/getBackgroundTasks", "/api/getBackgroundTasks?userId=bob",
    ]
    for url in lists:
        r = await api.client.get(url, headers=a)
        assert r.status_code == 200 and r.json()["tasks"] == [], url
    counts = (await api.client.get("/api/tasks/counts?userId=bob", headers=a)).json()["counts"]
    assert counts["total"] == 0
    assert (await api.client.get("/api/kiro/background-tasks", headers=a)).json()["taskCounts"]["total"] == 0
    for task_id in (theirs, theirs2):
        attempts = [
            api.client.get(f"/api/tasks/{task_id}", headers=a),
            api.client.patch(f"/api/tasks/{task_id}", headers=a, json={"status": "cancelled"}),
            api.client.post(f"/api/tasks/{task_id}/cancel", headers=a),
            api.client.post(f"/api/tasks/{task_id}/retry", headers=a),
            api.client.delete(f"/api/tasks/{task_id}", headers=a),
            api.client.put("/api/kiro/background-tasks", headers=a, json={"taskId": task_id, "status": "error"}),
            api.client.delete(f"/api/kiro/background-tasks?taskId={task_id}&action=cancel", headers=a),
            api.client.delete(f"/api/kiro/background-tasks?taskId={task_id}&action=retry", headers=a),
            api.client.delete(f"/api/kiro/background-tasks?taskId={task_id}&action=delete", headers=a),
        ]
        for attempt in attempts:
            r = await attempt
            assert r.status_code == 404, (r.request.method, r.request.url, r.text)
    # Clear-completed and bulk actions touch only the caller's own tasks.
    r = await api.client.delete("/api/kiro/background-tasks?action=clear-completed", headers=a)
    assert r.json()["deletedCount"] == 0
    for action in ("cancel", "retry", "delete"):
        r = await api.client.post(f"/api/tasks/bulk/{action}", headers=a,
                                  json={"ids": [theirs, theirs2], "filter": {"userId": "bob"}})
        assert r.json()["count"] == 0
        r = await api.client.post(f"/api/tasks/bulk/{action}", headers=a, json={"filter": {}})
        assert r.json()["count"] == 0
    # A user cannot create tasks for another.
    r = await api.client.post("/api/tasks", headers=a, json={"taskType": "noop", "userId": "bob"})
    assert r.status_code == 403
    # SSE subscription, when that endpoint is present.
    r = await api.client.get(f"/api/subscribeToTask?taskId={theirs}", headers=a)
    assert r.status_code == 404, r.text
    # Bob and the superuser still see everything that is theirs to see.
    assert (await api.client.get(f"/api/tasks/{theirs}", headers=b)).status_code == 200
    everyone = (await api.client.get("/api/tasks", headers=root)).json()
    assert {t["id"] for t in everyone["tasks"]} == {theirs, theirs2}
    assert everyone["counts"]["total"] == 2


async def test_revoked_key_is_refused(api: Api) -> None:
    from bgtasks.store import keys

    key, row = await keys.create_api_key(api.pool, "alice")
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/api/tasks", headers=headers)).status_code == 200
    stored = await api.pool.fetchval("SELECT key_hash FROM api_keys WHERE id = $1", row["id"])
    assert stored != key and len(stored) == 64  # only the hash is kept
    await keys.revoke_api_key(api.pool, str(row["id"]))
    assert (await api.client.get("/api/tasks", headers=headers)).status_code == 401


async def test_a_key_holder_must_label_json_as_json(api: Api) -> None:
    """Every mode, every credential: a state-changing request labelled other than JSON is a 415 naming the
    header (curl's `-d` default, form-urlencoded, included: the docs add `-H 'Content-Type: application/json'`),
    and nothing is created; labelled JSON, the same body is accepted."""
    alice = await api.key("alice")
    before = (await api.client.get("/api/tasks", headers=alice)).json()
    for label in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):
        r = await api.client.post("/api/tasks", content=b'{"taskType": "noop"}',
                                  headers={**alice, "Content-Type": label})
        assert r.status_code == 415, (label, r.text)
        assert r.json()["code"] == "unsupported_media_type" and r.json()["field"] == "content-type", r.text
    assert (await api.client.get("/api/tasks", headers=alice)).json() == before
    r = await api.client.post("/api/tasks", content=b'{"taskType": "noop"}',
                              headers={**alice, "Content-Type": "application/json"})
    assert r.status_code == 201 and r.json()["task"]["userId"] == "alice", r.text


async def test_user_ids_from_keys_compare_case_insensitively(api: Api, database_url: str) -> None:
    """`bgtasks keys create --user ALICE@Example.com` acts as alice@example.com (user ids are stored
    lower-cased, as the trusted proxy's are); a superuser creating for "Bob@Example.com" gives bob the task."""
    created = _cli(database_url, "create", "--user", "ALICE@Example.com")
    assert created.returncode == 0, created.stderr
    alice = {"Authorization": f"Bearer {created.stdout.strip()}"}
    me = await api.client.get("/api/me", headers=alice)
    assert me.status_code == 200 and me.json()["userId"] == "alice@example.com", me.text
    mine = await api.client.post("/api/tasks", json={"taskType": "noop"}, headers=alice)
    assert mine.status_code == 201 and mine.json()["task"]["userId"] == "alice@example.com", mine.text
    root = await api.key("root", superuser=True)
    theirs = await api.client.post("/api/tasks", json={"taskType": "noop", "userId": "Bob@Example.com"},
                                   headers=root)
    assert theirs.status_code == 201 and theirs.json()["task"]["userId"] == "bob@example.com", theirs.text
    bob = await api.key("bob@example.com")
    seen = await api.client.get(f"/api/tasks/{theirs.json()['task']['id']}", headers=bob)
    assert seen.status_code == 200, seen.text


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "bgtasks.cli", "keys", *args], env=env, text=True,
                          capture_output=True, timeout=60, cwd="/")


async def test_keys_cli_create_ls_revoke(api: Api, database_url: str) -> None:
    created = _cli(database_url, "create", "--user", "carol", "--superuser", "--label", "ops")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("bgt_") and len(key) == 36 and "shown only this once" in created.stderr
    r = await api.client.get("/api/queue", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    listed = _cli(database_url, "ls")
    assert "carol" in listed.stdout and "superuser" in listed.stdout and key not in listed.stdout
    assert _cli(database_url, "revoke", key).returncode == 0
    assert (await api.client.get("/api/queue", headers={"Authorization": f"Bearer {key}"})).status_code == 401
    assert _cli(database_url, "revoke", "bgt_nope").returncode == 3


async def test_dev_mode_refuses_proxied_rebound_and_cross_origin_requests(database_url: str, tmp_path: Path) -> None:
    async with running_api(database_url, tmp_path, client_host="127.0.0.1", bgtasks_dev=True,
                           base_url="http://127.0.0.1:8000") as api:
        assert (await api.client.get("/api/tasks")).status_code == 200
        for headers in ({"X-Forwarded-For": "1.2.3.4"}, {"Forwarded": "for=1.2.3.4"}, {"X-Real-IP": "1.2.3.4"},
                        {"Host": "evil.example:8000"}):
            r = await api.client.get("/api/tasks", headers=headers)
            assert r.status_code == 401 and "development mode" in r.json()["error"]
        r = await api.client.post("/api/queue/stop", json={}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 401 and "Origin" in r.json()["error"]
        r = await api.client.post("/api/tasks/bulk/cancel", content=b'{"ids": []}',
                                  headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and r.json()["field"] == "content-type"
        r = await api.client.post("/api/tasks", content=b'{"taskType": "noop"}')
        assert r.status_code == 201
    # Without BGTASKS_DEV=true (the default for `bgtasks api`) nothing is anonymous, even on loopback.
    async with running_api(database_url, tmp_path, client_host="127.0.0.1", bgtasks_dev=None,
                           base_url="http://127.0.0.1:8000") as api:
        assert (await api.client.get("/api/tasks")).status_code == 401
        assert (await api.client.get("/healthz")).status_code == 200


async def test_only_a_superuser_sees_which_workers_serve_a_type(api: Api, database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO bgtasks_workers (worker_id, hostname, pid, concurrency) "
                     "VALUES ('build-host-7:4242', 'build-host-7', 4242, 2)")
        conn.execute("""SELECT publish_task_types('build-host-7:4242', '[{"name": "noop", "description": "",
                     "payload_schema": {"type": "object"}, "result_schema": null, "max_retries": 0,
                     "time_limit_s": 60, "needs_project": false, "diagnostic": true, "handler": "noop"}]')""")
    as_user = (await api.client.get("/api/task-types", headers=await api.key("alice"))).json()["taskTypes"]
    as_admin = (await api.client.get("/api/task-types", headers=await api.key("root", superuser=True))).json()
    [mine] = [t for t in as_user if t["name"] == "noop"]
    [theirs] = [t for t in as_admin["taskTypes"] if t["name"] == "noop"]
    assert mine["liveWorkers"] == theirs["liveWorkers"] == 1
    assert "workers" not in mine and "publishedBy" not in mine
    assert "build-host-7" not in str(as_user)
    assert theirs["workers"] == ["build-host-7:4242"] and theirs["publishedBy"] == "build-host-7:4242"
