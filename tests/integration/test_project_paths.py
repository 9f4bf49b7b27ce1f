"""Project paths: in dev mode the local user may use any directory the process can read; otherwise
BGTASKS_PROJECT_ROOTS is required, and the 422 names the setting without showing the roots to plain users."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.integration.ai_support import ai_worker, insert_task, wait_final
from tests.integration.apiclient import running_api
from tests.processes import Processes


def _project(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "README.md").write_text("# demo\n")
    return where


def _docs(path: Path) -> dict[str, Any]:
    return {"taskType": "docs", "projectId": "p", "projectName": "P", "projectPath": str(path)}


async def test_the_local_user_in_dev_mode_may_use_any_readable_directory(database_url: str,
                                                                          tmp_path: Path) -> None:
    anywhere = _project(tmp_path / "anywhere" / "proj")
    async with running_api(database_url, tmp_path, client_host="127.0.0.1", bgtasks_dev=True,
                           bgtasks_project_roots="", base_url="http://127.0.0.1:8000") as api:
        r = await api.client.post("/api/tasks", json=_docs(anywhere))
        assert r.status_code == 201, r.text
        assert r.json()["task"]["projectPath"] == str(anywhere.resolve())
        missing = await api.client.post("/api/tasks", json=_docs(tmp_path / "nope"))
        assert missing.status_code == 422 and "does not exist" in missing.json()["error"]
        # A key's user is not the local user: the roots (here: none) apply.
        keyed = await api.client.post("/api/tasks", json=_docs(anywhere), headers=await api.key("alice"))
        assert keyed.status_code == 422 and "BGTASKS_PROJECT_ROOTS" in keyed.json()["error"]


async def test_outside_dev_mode_the_roots_are_required_and_not_shown_to_plain_users(database_url: str,
                                                                                     tmp_path: Path) -> None:
    root = tmp_path / "srv-projects-secret-name"
    inside = _project(root / "proj")
    outside = _project(tmp_path / "elsewhere")
    async with running_api(database_url, root) as api:
        alice = await api.key("alice")
        assert (await api.client.post("/api/tasks", json=_docs(inside), headers=alice)).status_code == 201
        r = await api.client.post("/api/tasks", json=_docs(outside), headers=alice)
        body = r.json()
        assert r.status_code == 422 and body["field"] == "projectPath"
        assert "BGTASKS_PROJECT_ROOTS" in body["error"] and "srv-projects-secret-name" not in body["error"]
        r = await api.client.post("/api/kiro/background-tasks", json=_docs(outside), headers=alice)
        assert r.status_code == 422 and "srv-projects-secret-name" not in r.text
        root_key = await api.key("root", superuser=True)
        r = await api.client.post("/api/tasks", json=_docs(outside), headers=root_key)
        assert r.status_code == 422 and str(root.resolve()) in r.json()["error"]  # a superuser may see them
    async with running_api(database_url, tmp_path, bgtasks_project_roots="") as api:
        r = await api.client.post("/api/tasks", json=_docs(inside), headers=await api.key("alice"))
        assert r.status_code == 422 and "BGTASKS_PROJECT_ROOTS" in r.json()["error"]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def test_a_dev_mode_worker_reads_the_local_users_project_anywhere_and_no_one_elses(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, tmp_path: Path) -> None:
    project = _project(tmp_path / "home" / "me" / "site")
    fields = {"project_id": "p", "project_name": "P", "project_path": str(project)}
    local = insert_task(sql, "docs", {}, user_id="local", **fields)
    other = insert_task(sql, "docs", {}, user_id="alice", **fields)
    ai_worker(procs, fake, None, BGTASKS_DEV="true")  # as `bgtasks up` starts it: dev mode, no roots
    rows = wait_final(sql, [local, other])
    assert rows[local]["status"] == "completed", rows[local]["error_message"]
    assert rows[other]["status"] == "error" and "BGTASKS_PROJECT_ROOTS" in rows[other]["error_message"]
