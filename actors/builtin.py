"""The built-in task types, declared with the public API like an application's own (`@bgtasks.task_type`):
seed one's five per-project types, seed two's three quiz types, and the diagnostics. Loaded by default
(BGTASKS_BUILTIN_TYPES=false turns them off).

Each function hands the actor module (`actors/<type>.py`) the full task context: the built-in actors also use
what the public `Task` leaves out on purpose (their own database queries, the project path settings). Actor
modules are imported on first run, so an API process that loads this module imports no model client."""

from __future__ import annotations

from typing import Any

from bgtasks.actors import diagnostics
from bgtasks.actors.payloads import GENERATION, PROJECT_PAYLOAD, QUESTION_IDS
from bgtasks.task_types import Task, task_type

# ---------------------------------------------------------------- seed one: per-project types


@task_type("docs", description="Generate documentation for a project", schema=PROJECT_PAYLOAD, needs_project=True)
async def docs(task: Task) -> dict[str, Any]:
    from bgtasks.actors import docs as actor

    return await actor.run(task._ctx)


@task_type("tasks", description="Recommend next tasks for a project", schema=PROJECT_PAYLOAD, needs_project=True)
async def tasks(task: Task) -> dict[str, Any]:
    from bgtasks.actors import tasks as actor

    return await actor.run(task._ctx)


@task_type("goals", description="Propose goals for a project", schema=PROJECT_PAYLOAD, needs_project=True)
async def goals(task: Task) -> dict[str, Any]:
    from bgtasks.actors import goals as actor

    return await actor.run(task._ctx)


@task_type("context", description="Write context files that describe a project's code", schema=PROJECT_PAYLOAD,
           needs_project=True)
async def context(task: Task) -> dict[str, Any]:
    from bgtasks.actors import context as actor

    return await actor.run(task._ctx)


@task_type("code", description="Find code optimisation tasks in a project", schema=PROJECT_PAYLOAD,
           needs_project=True)
async def code(task: Task) -> dict[str, Any]:
    from bgtasks.actors import code as actor

    return await actor.run(task._ctx)


# ---------------------------------------------------------------- seed two: quiz types


@task_type("generation", description="Generate quiz questions", schema=GENERATION)
async def generation(task: Task) -> dict[str, Any]:
    from bgtasks.actors import generation as actor

    return await actor.run(task._ctx)


@task_type("validation", description="Validate stored quiz questions", schema=QUESTION_IDS)
async def validation(task: Task) -> dict[str, Any]:
    from bgtasks.actors import validation as actor

    return await actor.run(task._ctx)


@task_type("emoji-regeneration", description="Choose new emoji for quiz questions", schema=QUESTION_IDS)
async def emoji_regeneration(task: Task) -> dict[str, Any]:
    from bgtasks.actors import emoji_regeneration as actor

    return await actor.run(task._ctx)


# ---------------------------------------------------------------- diagnostics: no model (deployments, tests, benchmarks)


@task_type("noop", description="Do nothing (benchmarks)", diagnostic=True)
def noop(task: Task) -> None:
    diagnostics.noop(task._ctx)


@task_type("sleep", description="Sleep, reporting progress", diagnostic=True, schema={
    "type": "object",
    "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600},
                   "steps": {"type": "integer", "minimum": 1, "maximum": 1000}},
    "additionalProperties": True,
})
async def sleep(task: Task) -> dict[str, Any]:
    return await diagnostics.sleep(task._ctx)


@task_type("add", description="Add a number to the upstream tasks' values (chains)", diagnostic=True, schema={
    "type": "object", "properties": {"start": {"type": "number"}, "add": {"type": "number"}},
    "additionalProperties": True,
})
def add(task: Task) -> dict[str, Any]:
    return diagnostics.add(task._ctx)


@task_type("flaky", description="Fail the first N attempts, then succeed", diagnostic=True, schema={
    "type": "object",
    "properties": {"failures": {"type": "integer", "minimum": 0, "maximum": 100}, "permanent": {"type": "boolean"},
                   "message": {"type": "string", "maxLength": 1000}},
    "additionalProperties": True,
})
def flaky(task: Task) -> dict[str, Any]:
    return diagnostics.flaky(task._ctx)
