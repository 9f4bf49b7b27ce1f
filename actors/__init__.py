"""The registry: task type -> the function that runs it, its payload schema and its limits.

Entries come from modules of task types loaded at process start (bgtasks/task_modules.py): the application's
own (`@bgtasks.task_type`, docs/adding-a-task-type.md) and bgtasks' built-in ones (bgtasks.actors.builtin).
The worker wraps each entry in a Dramatiq actor named after the type when it boots, on our Postgres broker.
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
    result_schema: dict[str, Any] | None = None  # what the function returns, when its annotation says
    function: Callable[..., Any] | None = field(default=None, compare=False, repr=False)  # set by task_type()

    def load(self) -> Callable[..., Any]:
        if self.function is not None:
            return self.function
        module, _, name = self.handler.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


TASK_TYPES: dict[str, TaskType] = {}


def get_task_type(name: str) -> TaskType | None:
    return TASK_TYPES.get(name)


def register(task_type: TaskType) -> None:
    """Add a type (bgtasks.task_type() calls this); a second, different type under one name is a mistake."""
    known = TASK_TYPES.get(task_type.name)
    if known is not None and known.handler != task_type.handler:
        raise ValueError(f"task type {task_type.name!r} is already registered by {known.handler}")
    TASK_TYPES[task_type.name] = task_type
