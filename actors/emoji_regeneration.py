"""`emoji-regeneration` (seed two): a new emoji for each chosen question of the user, stored on the question."""

from __future__ import annotations

import json
from typing import Any

from bgtasks.actors._schema import Schema, array, integer, obj, string
from bgtasks.actors.validation import load_owned
from bgtasks.store import questions as store
from bgtasks.task_context import TaskContext

SCHEMA_NAME = "question_emoji"
# An emoji with modifiers and joiners (a family, a flag) runs to a few code points; a word never fits.
MAX_EMOJI_CHARS = 16
SYSTEM = (
    "You choose emoji for quiz questions: one emoji per question that illustrates its subject at a glance, "
    "different from the current one. Answer with one JSON object that matches the given schema."
)


def answer_schema(ids: list[int]) -> Schema:
    return obj(emoji=obj("the new emoji by question id", **{str(i): string("exactly one emoji") for i in ids}))


RESULT_SCHEMA = obj(
    success={"type": "boolean", "const": True},
    questionsUpdated=integer(minimum=0),
    questions=array(obj(id=integer(minimum=1), question=string(), previousEmoji=string(), emoji=string())),
)


def _emoji_problems(chosen: dict[str, str]) -> list[str]:
    return [f"emoji.{key}: expected one emoji, got {value!r}" for key, value in chosen.items()
            if not value.strip() or len(value.strip()) > MAX_EMOJI_CHARS or any(c.isalpha() for c in value)]


async def run(task: TaskContext) -> dict[str, Any]:
    task.require_model()  # no key: fail before any work
    await task.progress(10, "Loading the questions")
    rows = await load_owned(task)
    shown = [{"id": r["id"], "question": r["question"], "correctAnswer": r["correct_answer"],
              "currentEmoji": r["emoji"] or ""} for r in rows]
    user = "Choose a new emoji for each of these questions:\n" + json.dumps(shown, ensure_ascii=False, indent=1)

    await task.progress(30, f"Choosing emoji for {len(rows)} questions with the model")
    # A schema cannot say "an emoji": that check is re-asked within the attempt like a schema miss.
    answer = await task.ask_model(system=SYSTEM, user=user, schema_name=SCHEMA_NAME,
                                  schema=answer_schema([r["id"] for r in rows]),
                                  check=lambda a: _emoji_problems(a["emoji"]))

    await task.progress(70, "Saving the new emoji")
    chosen = [{"id": r["id"], "emoji": answer["emoji"][str(r["id"])].strip()} for r in rows]
    await task.db(store.update_emoji, task.id, task.attempt, task.user_id, chosen)
    return {
        "success": True,
        "questionsUpdated": len(chosen),
        "questions": [{"id": r["id"], "question": r["question"], "previousEmoji": r["emoji"] or "",
                       "emoji": c["emoji"]} for r, c in zip(rows, chosen, strict=True)],
    }
