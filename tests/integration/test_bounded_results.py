"""Bounded model output end to end (issue 17): a 5 MB answer ends the task with a clear message, a result over
BGTASKS_MAX_RESULT_BYTES is not stored, and lists carry previews of large results, not the results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fakes.openai_server import FakeOpenAI, answer
from tests.integration.ai_support import Router, ai_worker, insert_task, wait_final
from tests.integration.apiclient import running_api
from tests.processes import Processes


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _project(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "README.md").write_text(f"# {name}\nA small project.\n")
    return path


def _docs(n: int, chars: int) -> dict[str, Any]:
    return {"summary": "A project.", "documents": [
        {"title": f"Doc {i}", "filename": f"docs/d{i}.md", "markdown": "w" * chars} for i in range(n)]}


def test_a_huge_answer_and_a_result_over_the_cap_end_with_clear_messages(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, tmp_path: Path) -> None:
    roots = tmp_path / "projects"
    router = Router()
    router.route("# huge-answer", then=answer("x" * 5_000_000))
    router.route("# big-result", then=answer(_docs(3, 15_000)))  # 45 KB: under the answer cap, over the result cap
    fake.always(router)
    ai_worker(procs, fake, roots, BGTASKS_MAX_RESULT_BYTES="20000")
    ids = {name: insert_task(sql, "docs", {}, project_id=name, project_name=name,
                             project_path=str(_project(roots, name)), max_retries=2)
           for name in ("huge-answer", "big-result")}
    rows = wait_final(sql, list(ids.values()), timeout=60)

    huge = rows[ids["huge-answer"]]
    assert huge["status"] == "error" and huge["retry_count"] == 0 and huge["result_data"] is None
    assert "was 5,000,000 characters, over the cap of 1,000,000" in huge["error_message"]
    big = rows[ids["big-result"]]
    assert big["status"] == "error" and big["retry_count"] == 0 and big["result_data"] is None
    assert "over the cap of 20,000 (BGTASKS_MAX_RESULT_BYTES); it was not stored" in big["error_message"]
    assert router.seen == {"# huge-answer": 1, "# big-result": 1}, "neither is re-run: nothing would change"


async def test_a_page_of_fifty_large_results_stays_small_and_the_task_itself_has_its_result(
        sql: psycopg.Connection[Any], database_url: str, tmp_path: Path) -> None:
    result = _docs(10, 20_000)  # 200 KB each: 10 MB for the page if lists carried results
    big = json.dumps(result)
    ids = [insert_task(sql, "docs", {}, user_id="alice", status="completed", result_data=big) for _ in range(50)]
    small = insert_task(sql, "noop", {}, user_id="alice", status="completed", result_data='{"ok": true}')

    async with running_api(database_url, tmp_path) as api:
        auth = await api.key("alice")
        page = await api.client.get("/api/tasks", params={"limit": 50, "type": "docs"}, headers=auth)
        assert page.status_code == 200
        assert len(page.content) < 100_000, f"a page of 50 was {len(page.content):,} bytes"
        tasks = page.json()["tasks"]
        assert len(tasks) == 50
        for t in tasks:
            assert t["resultTruncated"] is True
            assert t["resultData"] == t["result"] == {
                "truncated": True, "keys": ["documents", "summary"], "counts": {"documents": 10},
                "summary": "A project."}

        whole = (await api.client.get(f"/api/tasks/{ids[0]}", headers=auth)).json()["task"]
        assert whole["resultTruncated"] is False and whole["resultData"] == result

        listed_small = (await api.client.get("/api/tasks", params={"type": "noop"}, headers=auth)).json()
        [row] = listed_small["tasks"]
        assert row["id"] == small and row["resultData"] == {"ok": True} and row["resultTruncated"] is False

        # The seeds' lists carry results their clients read, but not pathological ones.
        seed_two = await api.client.get("/api/getBackgroundTasks", params={"limit": 50}, headers=auth)
        assert len(seed_two.content) < 100_000
        assert all(t["resultTruncated"] for t in seed_two.json()["tasks"] if t["taskType"] == "docs")
        seed_one = await api.client.get("/api/kiro/background-tasks", params={"limit": 50}, headers=auth)
        assert len(seed_one.content) < 100_000
