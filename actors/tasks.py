"""`tasks` (seed one): the next tasks recommended for a project, each with a priority and an effort."""

from __future__ import annotations

from typing import Any

from bgtasks.actors._project import PRIORITY, SYSTEM_PREAMBLE, result_schema, run_project_task
from bgtasks.actors._schema import array, obj, string
from bgtasks.task_context import TaskContext

SCHEMA_NAME = "project_tasks"
SYSTEM = SYSTEM_PREAMBLE + " " + (
    "You plan engineering work: concrete, small enough to finish, and justified by what the files show."
)
ASK = (
    "Recommend the next tasks for this project: missing features, bugs, gaps in tests and documentation, "
    "and maintenance. Order them by priority."
)
# What the model must answer (sent as the structured-output schema, checked on return).
ANSWER_SCHEMA = obj(
    summary=string("the state of the project in two or three sentences"),
    tasks=array(
        obj(title=string("imperative, under 80 characters"),
            description=string("what to do and why, in markdown"),
            priority=PRIORITY,
            category=string(enum=["feature", "bug", "test", "docs", "refactor", "ops", "security"]),
            effort=string("rough size", enum=["small", "medium", "large"]),
            files=array(string(), "paths of the files involved, relative to the project")),
        "recommended tasks, highest priority first", min_items=1),
)
# What result_data holds: the answer plus `source` (the project and the files the model saw).
RESULT_SCHEMA = result_schema(ANSWER_SCHEMA)


async def run(task: TaskContext) -> dict[str, Any]:
    return await run_project_task(task, system=SYSTEM, ask=ASK, schema_name=SCHEMA_NAME,
                                  answer_schema=ANSWER_SCHEMA, named_paths=lambda a: [f for t in a["tasks"] for f in t["files"]])
