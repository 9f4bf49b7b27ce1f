"""Small builders for the JSON schemas actors send as structured outputs. OpenAI's strict mode wants every
object closed (``additionalProperties: false``) with every property required; these make that the default.
Strings and arrays are bounded by default, so no answer can grow without limit: the bounds are sent to the
model and checked on return (actors/model.py)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# Default bounds: a long markdown document fits in a string, a generous list in an array.
MAX_STRING_CHARS = 20_000
MAX_ARRAY_ITEMS = 200


def obj(description: str = "", /, **properties: Schema) -> Schema:
    """A closed object: every property required, nothing else allowed. (``description`` is positional-only, so
    a property may be called "description".)"""
    out: Schema = {"type": "object", "properties": properties, "required": list(properties),
                   "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def array(items: Schema, description: str = "", *, min_items: int | None = None,
          max_items: int = MAX_ARRAY_ITEMS) -> Schema:
    out: Schema = {"type": "array", "items": items, "maxItems": max_items}
    if min_items is not None:
        out["minItems"] = min_items
    if description:
        out["description"] = description
    return out


def string(description: str = "", *, enum: list[str] | None = None,
           max_length: int = MAX_STRING_CHARS) -> Schema:
    out: Schema = {"type": "string"}
    if enum is not None:
        out["enum"] = enum
    else:
        out["maxLength"] = max_length
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
    from bgtasks.actors.json_schema import schema_problems
    from bgtasks.errors import PermanentTaskError

    task_type = get_task_type(task.task_type)
    problems = schema_problems(task.payload, task_type.payload_schema) if task_type else []
    if problems:
        raise PermanentTaskError(f"invalid payload for task type {task.task_type!r}: {'; '.join(problems[:5])}")
    return dict(task.payload)
