"""The built-in task types: seed one's five per-project types, seed two's three quiz types, and the
diagnostics. A module of task types like an application's own, loaded by default (BGTASKS_BUILTIN_TYPES)."""

from __future__ import annotations

from bgtasks.actors import TaskType, register
from bgtasks.actors.payloads import GENERATION, PROJECT_PAYLOAD, QUESTION_IDS

_TYPES = [
    TaskType("docs", "bgtasks.actors.docs:run", "Generate documentation for a project", PROJECT_PAYLOAD,
             needs_project=True),
    TaskType("tasks", "bgtasks.actors.tasks:run", "Recommend next tasks for a project", PROJECT_PAYLOAD,
             needs_project=True),
    TaskType("goals", "bgtasks.actors.goals:run", "Propose goals for a project", PROJECT_PAYLOAD, needs_project=True),
    TaskType("context", "bgtasks.actors.context:run", "Write context files that describe a project's code",
             PROJECT_PAYLOAD, needs_project=True),
    TaskType("code", "bgtasks.actors.code:run", "Find code optimisation tasks in a project", PROJECT_PAYLOAD,
             needs_project=True),
    TaskType(
        "generation", "bgtasks.actors.generation:run", "Generate quiz questions", GENERATION),
    TaskType("validation", "bgtasks.actors.validation:run", "Validate stored quiz questions", QUESTION_IDS),
    TaskType("emoji-regeneration", "bgtasks.actors.emoji_regeneration:run", "Choose new emoji for quiz questions",
             QUESTION_IDS),
    # Diagnostics: no model, for checking a deployment, the tests and the benchmarks.
    TaskType("noop", "bgtasks.actors.diagnostics:noop", "Do nothing (benchmarks)", diagnostic=True),
    TaskType(
        "sleep", "bgtasks.actors.diagnostics:sleep", "Sleep, reporting progress",
        {"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600},
                                          "steps": {"type": "integer", "minimum": 1, "maximum": 1000}},
         "additionalProperties": True},
        diagnostic=True,
    ),
    TaskType(
        "add", "bgtasks.actors.diagnostics:add", "Add a number to the upstream tasks' values (chains)",
        {"type": "object", "properties": {"start": {"type": "number"}, "add": {"type": "number"}},
         "additionalProperties": True},
        diagnostic=True,
    ),
    TaskType(
        "flaky", "bgtasks.actors.diagnostics:flaky", "Fail the first N attempts, then succeed",
        {"type": "object", "properties": {"failures": {"type": "integer", "minimum": 0, "maximum": 100},
                                          "permanent": {"type": "boolean"},
                                          "message": {"type": "string", "maxLength": 1000}},
         "additionalProperties": True},
        diagnostic=True,
    ),
]


for _task_type in _TYPES:
    register(_task_type)
