"""`context` (seed one): context files that describe a project's code for other tools (AI assistants,\nnew contributors): structure, conventions, commands, key modules."""

from __future__ import annotations

from typing import Any

from bgtasks.actors._project import SYSTEM_PREAMBLE, result_schema, run_project_task
from bgtasks.actors._schema import array, obj, string
from bgtasks.task_context import TaskContext

SCHEMA_NAME = "project_context"
SYSTEM = SYSTEM_PREAMBLE + " " + (
    "You write concise context files that let another tool or a new contributor work in a codebase "
    "without reading all of it."
)
ASK = (
    "Write context files for this project: one overview (purpose, layout, how to build, test and run), "
    "and one per major area describing its modules, their responsibilities, conventions and pitfalls. "
    "Name each file where it should live (e.g. .context/overview.md)."
)
# What the model must answer (sent as the structured-output schema, checked on return).
ANSWER_SCHEMA = obj(
    summary=string("what the project is, in two or three sentences"),
    files=array(
        obj(path=string("where the file should live, relative to the project, e.g. .context/overview.md"),
            title=string(),
            purpose=string("what this file tells its reader"),
            markdown=string("the file's content, in markdown")),
        "the context files, overview first", min_items=1),
)
# What result_data holds: the answer plus `source` (the project and the files the model saw).
RESULT_SCHEMA = result_schema(ANSWER_SCHEMA)


async def run(task: TaskContext) -> dict[str, Any]:
    return await run_project_task(task, system=SYSTEM, ask=ASK, schema_name=SCHEMA_NAME,
                                  answer_schema=ANSWER_SCHEMA)
