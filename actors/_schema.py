"""Small builders for the JSON schemas actors send as structured outputs. OpenAI's strict mode wants every
object closed (``additionalProperties: false``) with every property required; these make that the default."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def obj(description: str = "", /, **properties: Schema) -> Schema:
    """A closed object: every property required, nothing else allowed. (``description`` is positional-only, so
    a property may be called "description".)"""
    out: Schema = {"type": "object", "properties": properties, "required": list(properties),
                   "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def array(items: Schema, description: str = "", *, min_items: int | None = None,
          max_items: int | None = None) -> Schema:
    out: Schema = {"type": "array", "items": items}
    if min_items is not None:
        out["minItems"] = min_items
    if max_items is not None:
        out["maxItems"] = max_items
    if description:
        out["description"] = description
    return out


def string(description: str = "", *, enum: list[str] | None = None) -> Schema:
    out: Schema = {"type": "string"}
    if enum is not None:
        out["enum"] = enum
    if description:
        out["description"] = description
    return out


def integer(description: str = "", *, minimum: int | None = None, maximum: int | None = None) -> Schema:
    out: Schema = {"type": "integer"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    if description:
        out["description"] = description
    return out


def check_payload(task: Any) -> dict[str, Any]:
    """The task's payload, checked against its registry schema once more: a row inserted at psql skips the
    API's check, and a payload that cannot work should fail at once with what is wrong, not be retried."""
    from bgtasks.actors import get_task_type
    from bgtasks.actors.model import schema_problems
    from bgtasks.errors import PermanentTaskError

    task_type = get_task_type(task.task_type)
    problems = schema_problems(task.payload, task_type.payload_schema) if task_type else []
    if problems:
        raise PermanentTaskError(f"invalid payload for task type {task.task_type!r}: {'; '.join(problems[:5])}")
    return dict(task.payload)
