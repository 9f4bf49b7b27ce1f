"""`goals` (seed one): goals for a project, from near-term to long-term, each with success criteria."""

from __future__ import annotations

from typing import Any

from bgtasks.actors._project import PRIORITY, SYSTEM_PREAMBLE, result_schema, run_project_task
from bgtasks.actors._schema import array, obj, string
from bgtasks.task_context import TaskContext

SCHEMA_NAME = "project_goals"
SYSTEM = SYSTEM_PREAMBLE + " " + (
    "You help a team set goals for its project: ambitious but grounded in what exists."
)
ASK = (
    "Propose goals for this project: where it should be soon, in a few months and in the long run, each "
    "with criteria that tell when it is reached."
)
# What the model must answer (sent as the structured-output schema, checked on return).
ANSWER_SCHEMA = obj(
    summary=string("what the project is and where it stands"),
    goals=array(
        obj(title=string("the goal, in a sentence"),
            description=string("why it matters and what it involves, in markdown"),
            horizon=string(enum=["short-term", "medium-term", "long-term"]),
            priority=PRIORITY,
            successCriteria=array(string(), "observable signs that the goal is reached", min_items=1)),
        "goals, most important first", min_items=1),
)
# What result_data holds: the answer plus `source` (the project and the files the model saw).
RESULT_SCHEMA = result_schema(ANSWER_SCHEMA)


async def run(task: TaskContext) -> dict[str, Any]:
    return await run_project_task(task, system=SYSTEM, ask=ASK, schema_name=SCHEMA_NAME,
                                  answer_schema=ANSWER_SCHEMA)
