"""`code` (seed one): code optimisation tasks for a project: concrete changes to named files (performance,\nclarity, duplication, error handling, security), each with a suggested fix."""

from __future__ import annotations

from typing import Any

from bgtasks.actors._project import PRIORITY, SYSTEM_PREAMBLE, result_schema, run_project_task
from bgtasks.actors._schema import array, obj, string
from bgtasks.task_context import TaskContext

SCHEMA_NAME = "code_optimisation_tasks"
SYSTEM = SYSTEM_PREAMBLE + " " + (
    "You review code for improvements that are worth their cost, and you name the file and the change."
)
ASK = (
    "Find code optimisation tasks in this project: performance problems, duplicated or dead code, unclear "
    "code, weak error handling, missing types and security issues. Each task names the file and suggests "
    "the change."
)
# What the model must answer (sent as the structured-output schema, checked on return).
ANSWER_SCHEMA = obj(
    summary=string("the overall state of the code in two or three sentences"),
    tasks=array(
        obj(title=string("imperative, under 80 characters"),
            file=string("path relative to the project"),
            kind=string(enum=["performance", "duplication", "readability", "error-handling", "security",
                              "dead-code", "typing", "testing"]),
            priority=PRIORITY,
            description=string("what is wrong and why it matters, in markdown"),
            suggestion=string("the change to make, in markdown (may include a code sketch)")),
        "optimisation tasks, highest priority first", min_items=1),
)
# What result_data holds: the answer plus `source` (the project and the files the model saw).
RESULT_SCHEMA = result_schema(ANSWER_SCHEMA)


async def run(task: TaskContext) -> dict[str, Any]:
    return await run_project_task(task, system=SYSTEM, ask=ASK, schema_name=SCHEMA_NAME,
                                  answer_schema=ANSWER_SCHEMA, named_paths=lambda a: [t["file"] for t in a["tasks"]])
