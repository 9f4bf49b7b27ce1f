"""`validation` (seed two): the model checks the user's stored questions (facts, one correct option, wording)
and records a verdict (valid, invalid, uncertain) and its reason on each."""

from __future__ import annotations

import json
from typing import Any

from bgtasks.actors._schema import Schema, array, check_payload, integer, obj, string
from bgtasks.errors import PermanentTaskError
from bgtasks.store import questions as store
from bgtasks.task_context import TaskContext

SCHEMA_NAME = "question_verdicts"
VERDICTS = ["valid", "invalid", "uncertain"]
SYSTEM = (
    "You are a meticulous fact-checker for multiple-choice quiz questions. A question is valid when its facts "
    "are correct and undisputed, the marked answer is right, exactly one option is correct, and the wording is "
    "clear for its audience; invalid when any of these fails; uncertain when you cannot tell. Give a short, "
    "specific reason for each verdict. Answer with one JSON object that matches the given schema."
)
VERDICT = obj(verdict=string(enum=VERDICTS), reason=string("why, in one or two sentences"))


def answer_schema(ids: list[int]) -> Schema:
    """One verdict per question, keyed by its id: the schema itself makes the answer complete."""
    return obj(verdicts=obj("verdicts by question id", **{str(i): VERDICT for i in ids}))


RESULT_SCHEMA = obj(
    success={"type": "boolean", "const": True},
    questionsValidated=integer(minimum=0),
    valid=integer(minimum=0), invalid=integer(minimum=0), uncertain=integer(minimum=0),
    questions=array(obj(id=integer(minimum=1), question=string(), verdict=string(enum=VERDICTS),
                        reason=string())),
)


async def load_owned(task: TaskContext) -> list[dict[str, Any]]:
    """The task's questions, all owned by its user; any id that is not is an error naming it."""
    ids = sorted({int(i) for i in check_payload(task)["questionIds"]})
    rows = await task.db(store.load_questions, task.user_id, ids)
    missing = sorted(set(ids) - {r["id"] for r in rows})
    if missing:
        raise PermanentTaskError(
            f"questions not found for user {task.user_id}: {', '.join(map(str, missing))} "
            "(they do not exist or belong to another user); remove them from questionIds")
    return rows


async def run(task: TaskContext) -> dict[str, Any]:
    task.require_model()  # no key: fail before any work
    await task.progress(10, "Loading the questions")
    rows = await load_owned(task)
    shown = [{"id": r["id"], "question": r["question"], "options": r["options"],
              "markedCorrect": r["correct_answer"], "category": r["category"], "ageGroup": r["age_group"],
              "difficulty": r["difficulty"]} for r in rows]
    user = "Check these quiz questions:\n" + json.dumps(shown, ensure_ascii=False, indent=1)

    await task.progress(30, f"Validating {len(rows)} questions with the model")
    answer = await task.ask_model(system=SYSTEM, user=user, schema_name=SCHEMA_NAME,
                                  schema=answer_schema([r["id"] for r in rows]))

    await task.progress(70, "Saving the verdicts")
    verdicts = [{"id": r["id"], **answer["verdicts"][str(r["id"])]} for r in rows]
    await task.db(store.record_verdicts, task.id, task.attempt, task.user_id, verdicts)
    counts = {v: sum(1 for x in verdicts if x["verdict"] == v) for v in VERDICTS}
    return {
        "success": True,
        "questionsValidated": len(verdicts),
        **counts,
        "questions": [{"id": r["id"], "question": r["question"], "verdict": v["verdict"], "reason": v["reason"]}
                      for r, v in zip(rows, verdicts, strict=True)],
    }
