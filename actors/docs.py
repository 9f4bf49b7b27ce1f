"""`docs` (seed one): documentation for a project, written from its files as markdown documents."""

from __future__ import annotations

from typing import Any

from bgtasks.actors._project import SYSTEM_PREAMBLE, result_schema, run_project_task
from bgtasks.actors._schema import array, obj, string
from bgtasks.task_context import TaskContext

SCHEMA_NAME = "project_documentation"
SYSTEM = SYSTEM_PREAMBLE + " " + (
    "You write clear, accurate developer documentation in markdown."
)
ASK = (
    "Write documentation for this project: an overview (what it is and who it is for), how to install, "
    "configure and run it, its architecture (main parts and how data flows between them), and any other "
    "document the code calls for. One document per topic."
)
# What the model must answer (sent as the structured-output schema, checked on return).
ANSWER_SCHEMA = obj(
    summary=string("two or three sentences: what the project is"),
    documents=array(
        obj(title=string("document title"),
            filename=string("suggested file name, e.g. docs/architecture.md"),
            markdown=string("the document, in markdown")),
        "the documents, most important first", min_items=1),
)
# What result_data holds: the answer plus `source` (the project and the files the model saw).
RESULT_SCHEMA = result_schema(ANSWER_SCHEMA)


async def run(task: TaskContext) -> dict[str, Any]:
    return await run_project_task(task, system=SYSTEM, ask=ASK, schema_name=SCHEMA_NAME,
                                  answer_schema=ANSWER_SCHEMA)
