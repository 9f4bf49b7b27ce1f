"""The registry: task type -> the function that runs it, its payload schema and its limits.

Actor modules stay plain (an `async def run(task)` each); the worker wraps each entry in a Dramatiq actor
named after the type when it boots, on our Postgres broker. Adding a task type: one module with `run`, and
one entry below (docs/adding-a-task-type.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskType:
    name: str
    handler: str  # "module:function"
    description: str
    payload_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    needs_project: bool = False  # seed one's per-project types: projectId, projectName, projectPath required
    time_limit_s: float = 900.0
    max_retries: int = 3
    diagnostic: bool = False  # built-in types for checking a deployment and for tests; no model involved
    # The output limit this type's model calls send, and how far a cut-off answer may raise it; None: the
    # settings' (BGTASKS_MODEL_MAX_OUTPUT_TOKENS, BGTASKS_MODEL_MAX_OUTPUT_TOKENS_CAP).
    max_output_tokens: int | None = None
    max_output_tokens_cap: int | None = None
    function: Callable[..., Any] | None = field(default=None, compare=False, repr=False)  # set by task_type()

    def load(self) -> Callable[..., Any]:
        if self.function is not None:
            return self.function
        module, _, name = self.handler.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


_PROJECT_PAYLOAD: dict[str, Any] = {
    "type": "object",
    "properties": {"instructions": {"type": "string", "maxLength": 4000}},
    "additionalProperties": False,
}
_QUESTION_IDS: dict[str, Any] = {
    "type": "object",
    "properties": {"questionIds": {"type": "array", "items": {"type": "integer", "minimum": 1},
                                   "minItems": 1, "maxItems": 200}},
    "required": ["questionIds"],
    "additionalProperties": False,
}

_TYPES = [
    TaskType("docs", "bgtasks.actors.docs:run", "Generate documentation for a project", _PROJECT_PAYLOAD,
             needs_project=True),
    TaskType("tasks", "bgtasks.actors.tasks:run", "Recommend next tasks for a project", _PROJECT_PAYLOAD,
             needs_project=True),
    TaskType("goals", "bgtasks.actors.goals:run", "Propose goals for a project", _PROJECT_PAYLOAD, needs_project=True),
    TaskType("context", "bgtasks.actors.context:run", "Write context files that describe a project's code",
             _PROJECT_PAYLOAD, needs_project=True),
    TaskType("code", "bgtasks.actors.code:run", "Find code optimisation tasks in a project", _PROJECT_PAYLOAD,
             needs_project=True),
    TaskType(
        "generation", "bgtasks.actors.generation:run", "Generate quiz questions",
        {
            "type": "object",
            "properties": {
                "amount": {"type": "integer", "minimum": 1, "maximum": 50},
                "category": {"type": "string", "minLength": 1, "maxLength": 200},
                "ageGroup": {"type": "string", "enum": ["children", "youth", "adults"]},
                "difficulty": {"type": "string", "enum": ["easy", "medium", "hard"]},
                "provider": {"type": "string", "enum": ["openai"]},
            },
            "required": ["amount", "category"],
            "additionalProperties": False,
        },
    ),
    TaskType("validation", "bgtasks.actors.validation:run", "Validate stored quiz questions", _QUESTION_IDS),
    TaskType("emoji-regeneration", "bgtasks.actors.emoji_regeneration:run", "Choose new emoji for quiz questions",
             _QUESTION_IDS),
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

TASK_TYPES: dict[str, TaskType] = {t.name: t for t in _TYPES}


def get_task_type(name: str) -> TaskType | None:
    return TASK_TYPES.get(name)


def register(task_type: TaskType) -> None:
    """Add a type (bgtasks.task_type() calls this); a second, different type under one name is a mistake."""
    known = TASK_TYPES.get(task_type.name)
    if known is not None and known.handler != task_type.handler:
        raise ValueError(f"task type {task_type.name!r} is already registered by {known.handler}")
    TASK_TYPES[task_type.name] = task_type
