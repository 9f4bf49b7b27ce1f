"""Seed two's per-user actors (generation, validation, emoji-regeneration) in real worker processes against
the local OpenAI-compatible server: questions stored and reported as seed two shows, verdicts and emoji
recorded, and a task never touches another user's questions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bgtasks.actors import emoji_regeneration, generation, validation
from bgtasks.actors.model import schema_problems, wire_schema
from tests.fakes.openai_server import FakeOpenAI, answer
from tests.integration.ai_support import ai_worker, insert_task, model_calls, task_row, wait_final
from tests.processes import Processes
from tests.rows import one


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def add_question(sql: psycopg.Connection[Any], user_id: str, text: str, emoji: str = "❓") -> int:
    row = one(sql,
        "INSERT INTO questions (user_id, category, age_group, difficulty, question, options, correct_answer, emoji) "
        "VALUES (%s, 'Historia', 'adults', 'medium', %s, %s, 'A', %s) RETURNING id",
        (user_id, text, json.dumps(["A", "B", "C", "D"]), emoji))
    return int(row["id"])


def questions(sql: psycopg.Connection[Any], ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = sql.execute("SELECT * FROM questions WHERE id = ANY(%s)", (ids,)).fetchall()
    return {r["id"]: dict(r) for r in rows}


def test_generation_stores_the_questions_and_reports_them_as_seed_two_does(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    ai_worker(procs, fake)
    task_id = insert_task(sql, "generation", {"amount": 3, "category": "Historia", "ageGroup": "youth",
                                              "difficulty": "hard", "provider": "openai"}, user_id="anna@example.com")
    row = wait_final(sql, [task_id])[task_id]
    assert row["status"] == "completed", row["error_message"]
    result = row["result_data"]
    assert schema_problems(result, generation.RESULT_SCHEMA) == []
    assert result["success"] is True and result["questionsGenerated"] == 3 and len(result["questions"]) == 3
    assert row["result"] == result  # seed two's column name

    [request] = fake.requests
    assert request.schema is not None and request.schema == wire_schema(generation.answer_schema(3))
    assert request.schema["properties"]["questions"]["minItems"] == 3
    assert "Historia" in request.messages[-1]["content"] and "hard" in request.messages[-1]["content"]

    stored = questions(sql, [q["id"] for q in result["questions"]])
    assert len(stored) == 3
    for q in result["questions"]:
        s = stored[q["id"]]
        assert (s["user_id"], s["task_id"], s["category"], s["age_group"], s["difficulty"]) == (
            "anna@example.com", task_id, "Historia", "youth", "hard")
        assert s["correct_answer"] in s["options"] and len(s["options"]) == generation.OPTIONS
        assert q["correctAnswer"] == s["correct_answer"] and q["emoji"] == s["emoji"]
    assert len(model_calls(sql, task_id)) == 1


def test_validation_records_a_verdict_and_reason_on_each_question(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    ids = [add_question(sql, "anna", f"Question {i}?") for i in range(3)]
    verdicts = {str(ids[0]): {"verdict": "valid", "reason": "Correct and clear."},
                str(ids[1]): {"verdict": "invalid", "reason": "Two options are correct."},
                str(ids[2]): {"verdict": "uncertain", "reason": "Sources disagree."}}
    fake.script(answer({"verdicts": verdicts}))
    ai_worker(procs, fake)
    task_id = insert_task(sql, "validation", {"questionIds": ids}, user_id="anna")
    row = wait_final(sql, [task_id])[task_id]
    assert row["status"] == "completed", row["error_message"]
    result = row["result_data"]
    assert schema_problems(result, validation.RESULT_SCHEMA) == []
    assert (result["questionsValidated"], result["valid"], result["invalid"], result["uncertain"]) == (3, 1, 1, 1)
    assert [q["verdict"] for q in result["questions"]] == ["valid", "invalid", "uncertain"]
    stored = questions(sql, ids)
    assert stored[ids[1]]["validation_verdict"] == "invalid"
    assert stored[ids[1]]["validation_reason"] == "Two options are correct."
    assert all(s["validated_at"] is not None for s in stored.values())
    [request] = fake.requests
    assert request.schema is not None
    assert set(request.schema["properties"]["verdicts"]["required"]) == {str(i) for i in ids}
    assert "Question 2?" in request.messages[-1]["content"]


def test_emoji_regeneration_changes_only_the_chosen_questions(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    chosen = [add_question(sql, "anna", "Who built the pyramids?"), add_question(sql, "anna", "Who was Napoleon?")]
    other = add_question(sql, "anna", "Untouched?", emoji="🙂")
    fake.script(answer({"emoji": {str(chosen[0]): "🏛️", str(chosen[1]): "👑"}}))
    ai_worker(procs, fake)
    task_id = insert_task(sql, "emoji-regeneration", {"questionIds": chosen}, user_id="anna")
    row = wait_final(sql, [task_id])[task_id]
    assert row["status"] == "completed", row["error_message"]
    result = row["result_data"]
    assert schema_problems(result, emoji_regeneration.RESULT_SCHEMA) == []
    assert result["questionsUpdated"] == 2
    assert [(q["previousEmoji"], q["emoji"]) for q in result["questions"]] == [("❓", "🏛️"), ("❓", "👑")]
    stored = questions(sql, [*chosen, other])
    assert [stored[i]["emoji"] for i in chosen] == ["🏛️", "👑"] and stored[other]["emoji"] == "🙂"


def test_question_ids_of_another_user_are_an_error_that_names_them(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    mine = add_question(sql, "anna", "Mine?")
    theirs = add_question(sql, "bert", "Theirs?", emoji="🐻")
    ai_worker(procs, fake)
    checks = insert_task(sql, "validation", {"questionIds": [mine, theirs, 999999]}, user_id="anna")
    emoji = insert_task(sql, "emoji-regeneration", {"questionIds": [theirs]}, user_id="anna")
    broken = insert_task(sql, "generation", {"category": "Historia", "amount": 500}, user_id="anna")  # as at psql
    rows = wait_final(sql, [checks, emoji, broken])
    assert (rows[broken]["status"], rows[broken]["retry_count"]) == ("error", 0)
    assert rows[broken]["error_message"] == "invalid payload for task type 'generation': amount: expected at most 50, got 500"
    for task_id, named in ((checks, f"{theirs}, 999999"), (emoji, str(theirs))):
        row = rows[task_id]
        assert row["status"] == "error" and row["retry_count"] == 0
        assert row["error_message"].startswith(f"questions not found for user anna: {named} "), row["error_message"]
    assert fake.requests == [], "nothing may be sent to the model for a refused task"
    stored = questions(sql, [mine, theirs])
    assert stored[theirs]["emoji"] == "🐻" and stored[theirs]["validation_verdict"] is None
    assert stored[mine]["validation_verdict"] is None


def test_a_non_emoji_answer_is_reasked_then_fails_permanently(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    qid = add_question(sql, "anna", "Where is Rome?")
    fake.always(answer({"emoji": {str(qid): "Italy"}}))
    ai_worker(procs, fake)
    task_id = insert_task(sql, "emoji-regeneration", {"questionIds": [qid]}, user_id="anna", max_retries=1)
    row = wait_final(sql, [task_id])[task_id]
    assert row["status"] == "error" and row["retry_count"] == 0
    assert f"emoji.{qid}: expected one emoji, got 'Italy'" in row["error_message"]
    assert len(fake.requests) == 2, "the answer and one re-ask showing the problem, then no re-run"
    assert "expected one emoji" in fake.requests[1].messages[-1]["content"]
    assert task_row(sql, task_id)["prompt_tokens"] > 0  # failed calls are accounted too
    assert questions(sql, [qid])[qid]["emoji"] == "❓"
