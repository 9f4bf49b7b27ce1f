"""Quiz questions as a resource (issue 17): list with filters and a cursor, read, delete; owner isolation as
for tasks; bad input is a 4xx naming the field; the ids the quiz app needs for validation tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.apiclient import Api, running_api
from tests.rows import one


@pytest.fixture
async def api(database_url: str, tmp_path: Path):
    async with running_api(database_url, tmp_path) as a:
        yield a


def add(sql: psycopg.Connection[Any], user: str, text: str, *, category: str = "Historia",
        difficulty: str = "medium", age_group: str = "adults", task_id: str | None = None) -> int:
    row = one(sql,
        "INSERT INTO questions (user_id, task_id, category, age_group, difficulty, question, options, "
        "correct_answer, emoji) VALUES (%s, %s, %s, %s, %s, %s, %s, 'A', '❓') RETURNING id",
        (user, task_id, category, age_group, difficulty, text, json.dumps(["A", "B", "C", "D"])))
    return int(row["id"])


async def test_a_user_lists_reads_and_deletes_only_their_own_questions(
        api: Api, sql: psycopg.Connection[Any]) -> None:
    task = one(sql, "INSERT INTO background_tasks (task_type, user_id, payload) "
                       "VALUES ('generation', 'anna', '{}') RETURNING id")["id"]
    rome = add(sql, "anna", "Where is Rome?", task_id=task)
    maths = add(sql, "anna", "2 + 2?", category="Maths", difficulty="easy", age_group="children")
    theirs = add(sql, "bert", "Bert's?")
    sql.execute("UPDATE questions SET validation_verdict = 'valid', validation_reason = 'true', "
                "validated_at = now() WHERE id = %s", (rome,))
    anna, bert = await api.key("anna"), await api.key("bert")
    admin = await api.key("root", superuser=True)

    listed = (await api.client.get("/api/questions", headers=anna)).json()
    assert [q["id"] for q in listed["questions"]] == [maths, rome] and listed["nextCursor"] is None
    first = listed["questions"][1]
    assert first["question"] == "Where is Rome?" and first["options"] == ["A", "B", "C", "D"]
    assert first["correctAnswer"] == "A" and first["taskId"] == task and first["userId"] == "anna"
    assert first["validation"]["verdict"] == "valid" and listed["questions"][0]["validation"] is None

    async def ids(headers: dict[str, str], **params: Any) -> list[int]:
        r = await api.client.get("/api/questions", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return [q["id"] for q in r.json()["questions"]]

    assert await ids(anna, category="historia") == [rome]
    assert await ids(anna, difficulty="easy") == [maths]
    assert await ids(anna, ageGroup="children") == [maths]
    assert await ids(anna, taskId=task) == [rome]
    assert await ids(anna, userId="bert") == [], "another user's questions are not visible"
    assert await ids(admin) == [theirs, maths, rome]
    assert await ids(admin, userId="bert") == [theirs]

    page = (await api.client.get("/api/questions", params={"limit": 1}, headers=anna)).json()
    assert [q["id"] for q in page["questions"]] == [maths] and page["nextCursor"] == str(maths)
    assert await ids(anna, limit=1, cursor=page["nextCursor"]) == [rome]

    read = await api.client.get(f"/api/questions/{rome}", headers=anna)
    assert read.status_code == 200 and read.json()["question"]["id"] == rome
    assert (await api.client.get(f"/api/questions/{theirs}", headers=anna)).status_code == 404
    assert (await api.client.delete(f"/api/questions/{theirs}", headers=anna)).status_code == 404
    assert (await api.client.get(f"/api/questions/{theirs}", headers=bert)).status_code == 200

    deleted = await api.client.delete(f"/api/questions/{rome}", headers=anna)
    assert deleted.status_code == 200 and deleted.json()["deleted"] == rome
    assert (await api.client.get(f"/api/questions/{rome}", headers=anna)).status_code == 404
    assert await ids(anna) == [maths]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"difficulty": "impossible"}, "difficulty"), ({"ageGroup": "toddlers"}, "ageGroup"),
     ({"limit": "0"}, "limit"), ({"cursor": "abc"}, "cursor"), ({"taskId": "no spaces"}, "taskId"),
     ({"category": "x" * 500}, "category")],
)
async def test_bad_filters_are_a_4xx_naming_the_field(api: Api, params: dict[str, str], field: str) -> None:
    r = await api.client.get("/api/questions", params=params, headers=await api.key("anna"))
    assert 400 <= r.status_code < 500 and r.json()["field"] == field, r.text


async def test_ids_that_cannot_be_questions_are_not_found(api: Api) -> None:
    auth = await api.key("anna")
    for raw in ("abc", "0", "-1", "99999999999999999999", "1.5"):
        r = await api.client.get(f"/api/questions/{raw}", headers=auth)
        assert r.status_code == 404 and r.json()["success"] is False, (raw, r.text)
    assert (await api.client.get("/api/questions")).status_code == 401


@pytest.mark.parametrize("task_type", ["validation", "emoji-regeneration"])
async def test_question_ids_beyond_bigint_are_a_422_not_a_task_that_fails(api: Api, task_type: str) -> None:
    auth = await api.key("anna")
    for big in (2**63, 10**30):
        r = await api.client.post("/api/tasks", headers=auth,
                                  json={"taskType": task_type, "payload": {"questionIds": [1, big]}})
        assert r.status_code == 422 and r.json()["field"] == "payload.questionIds[1]", r.text
    assert (await api.client.get("/api/tasks", headers=auth)).json()["tasks"] == []  # nothing half-made
    r = await api.client.post("/api/tasks", headers=auth,
                              json={"taskType": task_type, "payload": {"questionIds": [2**63 - 1]}})
    assert r.status_code == 201, r.text
