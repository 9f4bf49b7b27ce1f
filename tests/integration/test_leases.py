"""Only a lease makes a task running: plain users cannot set processing; a superuser's (an external
processor's) move to processing takes a lease that its updates extend and the reaper takes back; psql's too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.apiclient import Api, running_api
from tests.processes import Processes, wait_until
from tests.rows import one


@pytest.fixture
async def api(database_url: str, tmp_path: Path):
    async with running_api(database_url, tmp_path, bgtasks_lease_s=1.0) as a:
        yield a


async def _new(api: Api, auth: dict[str, str]) -> str:
    r = await api.client.post("/api/tasks", headers=auth, json={"taskType": "sleep", "payload": {"seconds": 0}})
    assert r.status_code == 201, r.text
    return str(r.json()["task"]["id"])


async def test_plain_users_cannot_run_a_task_or_report_on_it(api: Api) -> None:
    alice = await api.key("alice")
    task_id = await _new(api, alice)
    for body in ({"status": "processing"}, {"progress": 50}, {"status": "processing", "progress": 10}):
        r = await api.client.patch(f"/api/tasks/{task_id}", headers=alice, json=body)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "forbidden" and "superuser" in r.json()["error"]
        assert r.json()["field"] in ("status", "progress")
    r = await api.client.put("/api/kiro/background-tasks", headers=alice,
                             json={"taskId": task_id, "status": "processing"})
    assert r.status_code == 403 and r.json()["field"] == "status"
    task = (await api.client.get(f"/api/tasks/{task_id}", headers=alice)).json()["task"]
    assert (task["status"], task["attempt"], task["leaseExpiresAt"]) == ("pending", 0, None)
    # What plain users could always do still works: finish their own task by hand, or cancel it.
    r = await api.client.patch(f"/api/tasks/{task_id}", headers=alice, json={"status": "error"})
    assert r.status_code == 200 and r.json()["task"]["status"] == "error"


async def test_a_superusers_processing_takes_a_lease_that_its_progress_extends(api: Api) -> None:
    root = await api.key("root", superuser=True)
    task_id = await _new(api, root)
    r = await api.client.patch(f"/api/tasks/{task_id}", headers=root, json={"status": "processing"})
    assert r.status_code == 200, r.text
    taken = r.json()["task"]
    assert (taken["status"], taken["workerId"], taken["attempt"]) == ("processing", "external:root", 1)
    assert taken["leaseExpiresAt"] and taken["startedAt"]
    r = await api.client.patch(f"/api/tasks/{task_id}", headers=root, json={"progress": 40, "description": "half"})
    assert r.status_code == 200, r.text
    extended = r.json()["task"]
    assert (extended["progress"], extended["description"], extended["attempt"]) == (40, "half", 1)
    assert extended["leaseExpiresAt"] > taken["leaseExpiresAt"]
    # Seed one's processor flow: PUT processing again (extends), then PUT completed.
    r = await api.client.put("/api/kiro/background-tasks", headers=root,
                             json={"taskId": task_id, "status": "processing"})
    assert r.status_code == 200 and r.json()["task"]["leaseExpiresAt"] > extended["leaseExpiresAt"]
    r = await api.client.put("/api/kiro/background-tasks", headers=root,
                             json={"taskId": task_id, "status": "completed", "resultData": {"ok": True}})
    done = r.json()["task"]
    assert (done["status"], done["leaseExpiresAt"], done["resultData"]) == ("completed", None, {"ok": True})


async def test_another_superuser_does_not_extend_a_lease_it_does_not_hold(api: Api, sql: psycopg.Connection[Any],
                                                                           ) -> None:
    root = await api.key("root", superuser=True)
    task_id = await _new(api, root)
    taken = (await api.client.patch(f"/api/tasks/{task_id}", headers=root, json={"status": "processing"})).json()
    other = await api.key("ops", superuser=True)
    r = await api.client.patch(f"/api/tasks/{task_id}", headers=other, json={"progress": 5})
    assert r.status_code == 200
    assert r.json()["task"]["leaseExpiresAt"] == taken["task"]["leaseExpiresAt"]
    assert r.json()["task"]["workerId"] == "external:root"


def test_psql_processing_gets_a_lease_and_a_processing_row_cannot_lose_it(sql: psycopg.Connection[Any]) -> None:
    task_id = one(sql, "INSERT INTO background_tasks (task_type, user_id) VALUES ('sleep', 'u') RETURNING id"
                          )["id"]  # type: ignore[index]
    sql.execute("UPDATE background_tasks SET status = 'processing' WHERE id = %s", (task_id,))
    row = sql.execute("SELECT worker_id, attempt, lease_expires_at > now() AS leased FROM background_tasks "
                      "WHERE id = %s", (task_id,)).fetchone()
    assert row is not None and row["leased"] and row["attempt"] == 1 and row["worker_id"].startswith("sql:")
    with pytest.raises(psycopg.errors.CheckViolation, match="background_tasks_processing_has_lease"):
        sql.execute("UPDATE background_tasks SET lease_expires_at = NULL WHERE id = %s", (task_id,))
    with pytest.raises(psycopg.errors.CheckViolation):
        sql.execute("INSERT INTO background_tasks (task_type, user_id, status) VALUES ('sleep', 'u', 'processing')")


async def test_abandoned_processing_rows_are_reaped_and_other_users_tasks_run(
    api: Api, sql: psycopg.Connection[Any], procs: Processes
) -> None:
    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 2")
    root = await api.key("processor", superuser=True)
    abandoned = [await _new(api, root) for _ in range(2)]
    for task_id in abandoned:
        r = await api.client.patch(f"/api/tasks/{task_id}", headers=root, json={"status": "processing"})
        assert r.status_code == 200, r.text
    # The external processor dies here: nobody extends the two leases (1 s, BGTASKS_LEASE_S of the API).
    bob = await api.key("bob")
    bobs = await _new(api, bob)
    procs.worker(concurrency=2, BGTASKS_REAP_INTERVAL_S="0.2")

    def status(task_id: str) -> str:
        row = sql.execute("SELECT status::text FROM background_tasks WHERE id = %s", (task_id,)).fetchone()
        return str(row["status"]) if row else "gone"

    wait_until(lambda: status(bobs) == "completed", 60, "bob's task to run once the abandoned leases ran out")
    reaped = sql.execute("SELECT task_id, worker_id FROM task_attempt_errors WHERE error_type = 'LeaseExpired' "
                         "ORDER BY task_id").fetchall()
    assert [(r["task_id"], r["worker_id"]) for r in reaped] == [(t, "external:processor") for t in sorted(abandoned)]
    wait_until(lambda: all(status(t) == "completed" for t in abandoned), 60,
               "the reaped tasks to run on the worker")
