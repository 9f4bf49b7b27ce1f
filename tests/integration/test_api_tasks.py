"""The resource API: create (idempotent, batch), read, filters, search, sort, cursors, counts, bulk actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.apiclient import Api, running_api


@pytest.fixture
async def api(database_url: str, tmp_path: Path):
    async with running_api(database_url, tmp_path) as a:
        yield a


async def _new(api: Api, auth: dict[str, str], **fields: object) -> dict:
    body = {"taskType": "sleep", "payload": {"seconds": 0}, **fields}
    r = await api.client.post("/api/tasks", headers=auth, json=body)
    assert r.status_code == 201, r.text
    return r.json()["task"]


async def test_create_and_read_back_without_a_worker(api: Api) -> None:
    auth = await api.key("alice")
    task = await _new(api, auth, label="Nightly docs", description="writes docs", priority=5, maxRetries=2)
    assert task["status"] == "pending" and task["userId"] == "alice" and task["seq"] > 0
    read = (await api.client.get(f"/api/tasks/{task['id']}", headers=auth)).json()["task"]
    token = task.pop("subscribeToken")  # create responses add a read token for the task
    # The detail adds why it waits (no worker runs in this test) and its links.
    assert read.pop("waitingFor")["reason"] == "no_worker" and read.pop("dependsOn") == read.pop("dependents") == []
    assert read == task and token.count(".") == 2
    for key in ("createdAt", "updatedAt", "runAt"):
        assert "T" in read[key]


class Counting:
    """Stands in for the pool (or a connection from it): counts the round trips a handler makes."""

    def __init__(self, target: object, calls: list[str] | None = None) -> None:
        self.target = target
        self.calls: list[str] = [] if calls is None else calls

    def __getattr__(self, name: str) -> object:
        target = getattr(self.target, name)
        if name == "acquire":
            return lambda *a, **kw: _CountingAcquire(target(*a, **kw), self.calls)
        if name == "transaction":
            self.calls += ["BEGIN", "COMMIT"]
            return target
        if name not in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
            return target

        async def counted(query: str, *args: object, **kw: object) -> object:
            self.calls.append(query)
            return await target(query, *args, **kw)

        return counted


class _CountingAcquire:
    def __init__(self, cm: object, calls: list[str]) -> None:
        self.cm, self.calls = cm, calls

    async def __aenter__(self) -> Counting:
        return Counting(await self.cm.__aenter__(), self.calls)  # type: ignore[attr-defined]

    async def __aexit__(self, *exc: object) -> None:
        await self.cm.__aexit__(*exc)  # type: ignore[attr-defined]


async def test_create_is_one_round_trip(api: Api) -> None:
    """Creating a task (behind the trusted proxy: no key lookup) is one statement plus its NOTIFY."""
    counting = Counting(api.pool)
    real = api.app.state.pool
    api.app.state.pool = counting
    api.app.state.settings = api.app.state.settings.model_copy(update={"bgtasks_trusted_proxy": True})
    try:
        r = await api.client.post("/api/tasks", headers={"x-user-email": "a@x"}, json={"taskType": "noop"})
    finally:
        api.app.state.pool = real
    assert r.status_code == 201
    assert len(counting.calls) == 1 and "INSERT INTO background_tasks" in counting.calls[0], counting.calls


async def test_idempotency_key_returns_the_first_task(api: Api) -> None:
    auth = await api.key("alice")
    headers = {**auth, "Idempotency-Key": "order-42"}
    first = await api.client.post("/api/tasks", headers=headers, json={"taskType": "noop", "label": "one"})
    again = await api.client.post("/api/tasks", headers=headers, json={"taskType": "noop", "label": "two"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["task"]["id"] == first.json()["task"]["id"] and again.json()["created"] is False
    other = await api.key("bob")  # keys are per user
    theirs = await api.client.post("/api/tasks", headers={**other, "Idempotency-Key": "order-42"},
                                   json={"taskType": "noop"})
    assert theirs.status_code == 201 and theirs.json()["task"]["id"] != first.json()["task"]["id"]


async def test_batch_create(api: Api) -> None:
    auth = await api.key("alice")
    r = await api.client.post("/api/tasks/batch", headers=auth,
                              json={"tasks": [{"taskType": "noop", "label": f"t{i}"} for i in range(300)]})
    assert r.status_code == 201, r.text
    assert r.json()["count"] == 300
    counts = (await api.client.get("/api/tasks/counts", headers=auth)).json()["counts"]
    assert counts["pending"] == 300 and counts["total"] == 300
    r = await api.client.post("/api/tasks/batch", headers=auth,
                              json={"tasks": [{"taskType": "noop"}, {"taskType": "nope"}]})
    assert r.status_code == 422 and r.json()["field"] == "tasks[1].taskType"
    r = await api.client.post("/api/tasks/batch", headers=auth, json={"tasks": [{"taskType": "noop"}] * 1001})
    assert r.status_code == 422 and r.json()["field"] == "tasks"


async def test_filters_search_sort_and_cursor_pages(api: Api) -> None:
    auth = await api.key("alice")
    ids = []
    for i in range(7):
        t = await _new(api, auth, label=f"report {i}" if i % 2 else f"other {i}", priority=i)
        ids.append(t["id"])
    await _new(api, auth, taskType="noop", payload={}, label="noop 100%_done")
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/tasks?type=sleep&limit=3&sort=-priority" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.client.get(url, headers=auth)).json()
        seen += [t["id"] for t in page["tasks"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    found = (await api.client.get("/api/tasks?q=REPORT", headers=auth)).json()["tasks"]
    assert sorted(t["label"] for t in found) == ["report 1", "report 3", "report 5"]
    # LIKE wildcards in the search text are plain characters.
    found = (await api.client.get("/api/tasks?q=100%25_", headers=auth)).json()["tasks"]
    assert [t["label"] for t in found] == ["noop 100%_done"]
    assert (await api.client.get("/api/tasks?q=%25", headers=auth)).json()["tasks"][0]["taskType"] == "noop"
    oldest = (await api.client.get("/api/tasks?sort=createdAt&limit=1", headers=auth)).json()["tasks"]
    assert oldest[0]["id"] == ids[0]
    none = (await api.client.get("/api/tasks?createdSince=2999-01-01T00:00:00Z", headers=auth)).json()
    assert none["tasks"] == [] and none["nextCursor"] is None
    some = (await api.client.get("/api/tasks?createdUntil=2999-01-01&status=pending,failed", headers=auth)).json()
    assert len(some["tasks"]) == 8
    bad = await api.client.get("/api/tasks?cursor=garbage", headers=auth)
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"


async def test_single_task_actions(api: Api) -> None:
    auth = await api.key("alice")
    task = await _new(api, auth)
    r = await api.client.post(f"/api/tasks/{task['id']}/cancel", headers=auth, json={"reason": "changed my mind"})
    assert r.status_code == 200 and r.json()["task"]["cancelReason"] == "changed my mind"
    r = await api.client.post(f"/api/tasks/{task['id']}/cancel", headers=auth)
    assert r.status_code == 409 and "cancelled" in r.json()["error"]
    r = await api.client.post(f"/api/tasks/{task['id']}/retry", headers=auth)
    assert r.status_code == 200 and r.json()["task"]["status"] == "pending"
    r = await api.client.patch(f"/api/tasks/{task['id']}", headers=auth, json={"status": "completed"})
    assert r.status_code == 200 and r.json()["task"]["status"] == "completed"
    r = await api.client.patch(f"/api/tasks/{task['id']}", headers=await api.key("root", superuser=True),
                               json={"status": "processing"})
    assert r.status_code == 409 and "completed is final" in r.json()["error"]
    r = await api.client.delete(f"/api/tasks/{task['id']}", headers=auth)
    assert r.json() == {"success": True, "deleted": task["id"]}
    assert (await api.client.get(f"/api/tasks/{task['id']}", headers=auth)).status_code == 404


async def test_bulk_by_ids_and_by_filter(api: Api) -> None:
    auth = await api.key("alice")
    tasks = [await _new(api, auth, label=f"b{i}") for i in range(5)]
    ids = [t["id"] for t in tasks]
    r = await api.client.post("/api/tasks/bulk/cancel", headers=auth, json={"ids": [*ids[:2], "task_nope"]})
    body = r.json()
    assert sorted(body["ids"]) == sorted(ids[:2]) and body["skipped"] == ["task_nope"]
    r = await api.client.post("/api/tasks/bulk/retry", headers=auth, json={"filter": {"status": "cancelled"}})
    assert sorted(r.json()["ids"]) == sorted(ids[:2])
    r = await api.client.post("/api/tasks/bulk/cancel", headers=auth,
                              json={"filter": {"status": ["pending"], "q": "b4"}})
    assert r.json()["ids"] == [ids[4]]
    r = await api.client.post("/api/tasks/bulk/delete", headers=auth, json={"filter": {}})
    assert r.json()["count"] == 5
    counts = (await api.client.get("/api/tasks/counts", headers=auth)).json()["counts"]
    assert counts["total"] == 0
    r = await api.client.post("/api/tasks/bulk/delete", headers=auth, json={})
    assert r.status_code == 422 and r.json()["field"] == "ids"


async def test_totals_follow_every_filter_and_a_search_stops_counting_at_the_cap(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgtasks.api import tasks as tasks_api

    auth = await api.key("alice")
    other = await api.key("bob")
    r = await api.client.post("/api/tasks/batch", headers=auth, json={"tasks": [
        {"taskType": "noop", "label": f"{'red' if i < 6 else 'blue'} {i}", "projectId": "p1" if i % 2 else "p2"}
        for i in range(10)]})
    ids = [t["id"] for t in r.json()["tasks"]]
    await _new(api, other, label="red of bob's")
    await api.client.post("/api/tasks/bulk/cancel", headers=auth, json={"ids": ids[:2]})  # red 0, red 1

    page = (await api.client.get("/api/tasks?q=red&status=pending&limit=2", headers=auth)).json()
    # Counts by status under the search (not the status filter); matching: the status filter too.
    assert page["counts"] == {"pending": 4, "processing": 0, "completed": 0, "error": 0, "cancelled": 2,
                              "total": 6}
    assert page["matching"] == 4 and page["countsCapped"] is False and len(page["tasks"]) == 2
    totals = (await api.client.get("/api/tasks/counts?q=red&projectId=p1&status=cancelled", headers=auth)).json()
    assert totals == {"counts": {"pending": 2, "processing": 0, "completed": 0, "error": 0, "cancelled": 1,
                                 "total": 3}, "matching": 1, "countsCapped": False, "success": True}  # red 1, 3, 5
    plain = (await api.client.get("/api/tasks/counts?status=pending,cancelled", headers=auth)).json()
    assert plain["counts"]["total"] == 10 and plain["matching"] == 10  # task_counts: alice's own

    monkeypatch.setattr(tasks_api, "COUNT_CAP", 3)
    capped = (await api.client.get("/api/tasks/counts?q=e", headers=auth)).json()
    assert capped["countsCapped"] is True and capped["counts"]["total"] == 3
    for query, field in (("createdSince=yesterday", "createdSince"), ("status=asleep", "status"),
                         ("type=no-such-type", "type")):
        r = await api.client.get(f"/api/tasks/counts?{query}", headers=auth)
        assert 400 <= r.status_code < 500 and r.json()["field"] == field, (query, r.text)


async def test_queue_resource(api: Api) -> None:
    root = await api.key("root", superuser=True)
    r = await api.client.patch("/api/queue", headers=root, json={"maxConcurrentTasks": 4, "pollInterval": 1000})
    assert r.status_code == 200 and r.json()["queueSettings"]["maxConcurrentTasks"] == 4
    r = await api.client.patch("/api/queue", headers=root, json={"maxConcurrentTasks": None})
    assert r.json()["queueSettings"]["maxConcurrentTasks"] is None
    assert (await api.client.post("/api/queue/stop", headers=root)).json()["queueSettings"]["isActive"] is False
    assert (await api.client.post("/api/queue/start", headers=root)).json()["queueSettings"]["isActive"] is True
    user = await api.key("alice")
    assert (await api.client.get("/api/queue", headers=user)).json()["queueSettings"]["isActive"] is True
    assert (await api.client.patch("/api/queue", headers=user, json={"isActive": False})).status_code == 403
    assert (await api.client.post("/api/queue/stop", headers=user)).status_code == 403


async def test_project_types_need_a_path_under_the_roots(api: Api, tmp_path: Path) -> None:
    auth = await api.key("alice")
    base = {"taskType": "docs", "projectId": "p", "projectName": "P"}
    r = await api.client.post("/api/tasks", headers=auth, json=base)
    assert r.status_code == 422 and r.json()["field"] == "projectPath"
    r = await api.client.post("/api/tasks", headers=auth, json={**base, "projectPath": "/etc"})
    assert r.status_code == 422 and r.json()["field"] == "projectPath" and "outside" in r.json()["error"]
    r = await api.client.post("/api/tasks", headers=auth,
                              json={**base, "projectPath": api.project() + "/../../.."})
    assert r.status_code == 422
    r = await api.client.post("/api/tasks", headers=auth, json={**base, "projectPath": api.project()})
    assert r.status_code == 201
