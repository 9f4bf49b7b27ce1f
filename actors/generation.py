"""`generation` (seed two): N quiz questions for a category, age group and difficulty, each with four answer
options, the correct one, an explanation and an emoji; stored in `questions` for the task's user."""

from __future__ import annotations

from typing import Any

from bgtasks.actors._schema import Schema, array, check_payload, integer, obj, string
from bgtasks.store import questions as store
from bgtasks.task_context import TaskContext

SCHEMA_NAME = "quiz_questions"
OPTIONS = 4
AGE_GROUPS = {"children": "children aged 6-12", "youth": "teenagers aged 13-17", "adults": "adults"}

SYSTEM = (
    "You write multiple-choice quiz questions. Every question has exactly one correct option, the other "
    "options are plausible but clearly wrong, facts are accurate and not disputed, and the wording suits the "
    "audience. Answer with one JSON object that matches the given schema."
)
QUESTION = obj(
    question=string("the question, ending with a question mark"),
    options=array(string("an answer option"), f"exactly {OPTIONS} distinct answer options",
                  min_items=OPTIONS, max_items=OPTIONS),
    correctOptionIndex=integer("index (0-based) of the correct option in options", minimum=0,
                               maximum=OPTIONS - 1),
    explanation=string("one or two sentences: why the correct option is right"),
    emoji=string("one emoji that illustrates the question"),
)


def answer_schema(amount: int) -> Schema:
    """What the model must answer: exactly ``amount`` questions (the schema says so; the answer is checked)."""
    return obj(questions=array(QUESTION, min_items=amount, max_items=amount))


STORED_QUESTION = obj(
    id=integer(minimum=1), question=string(), options=array(string()), correctAnswer=string(),
    explanation=string(), emoji=string(), category=string(), ageGroup=string(), difficulty=string(),
)
# result_data, as seed two shows it.
RESULT_SCHEMA = obj(
    success={"type": "boolean", "const": True},
    questionsGenerated=integer(minimum=0),
    questions=array(STORED_QUESTION),
)


async def run(task: TaskContext) -> dict[str, Any]:
    task.require_model()  # no key: fail before any work
    p = check_payload(task)
    amount, category = int(p["amount"]), str(p["category"]).strip()
    age_group, difficulty = p.get("ageGroup", "adults"), p.get("difficulty", "medium")

    await task.progress(10, "Preparing the AI request")
    user = (f"Write {amount} {difficulty} quiz questions in the category \"{category}\" for "
            f"{AGE_GROUPS.get(age_group, age_group)}. Write them in the language of the category name. "
            "No two questions may ask the same thing.")
    await task.progress(30, f"Generating {amount} questions about {category} with the model")
    answer = await task.ask_model(system=SYSTEM, user=user, schema_name=SCHEMA_NAME, schema=answer_schema(amount))

    await task.progress(70, f"Saving {amount} questions")
    drafts = [
        {"question": q["question"].strip(), "options": q["options"],
         "correctAnswer": q["options"][q["correctOptionIndex"]], "explanation": q["explanation"].strip(),
         "emoji": q["emoji"].strip()}
        for q in answer["questions"]
    ]
    rows = await task.db(store.insert_questions, task.id, task.attempt, task.user_id, category, age_group,
                         difficulty, drafts)
    saved = [
        {"id": r["id"], "question": r["question"], "options": r["options"], "correctAnswer": r["correct_answer"],
         "explanation": r["explanation"] or "", "emoji": r["emoji"] or "", "category": r["category"],
         "ageGroup": r["age_group"], "difficulty": r["difficulty"]}
        for r in rows
    ]
    return {"success": True, "questionsGenerated": len(saved), "questions": saved}
