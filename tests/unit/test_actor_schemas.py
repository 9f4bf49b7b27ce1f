"""The schemas the AI actors send are what OpenAI's strict structured outputs accept, and the fake server's
valid instance of each passes our own check (so the two agree on the subset used)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from bgtasks.actors import TASK_TYPES
from bgtasks.actors.model import schema_problems, wire_schema
from tests.fakes.openai_server import valid_instance

AI_TYPES = [t for t in TASK_TYPES.values() if not t.diagnostic]
# Keywords strict mode accepts (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas).
STRICT_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "enum", "const",
                   "description", "minItems", "maxItems", "minimum", "maximum", "pattern", "anyOf", "$defs", "$ref"}


def answer_schemas(module: Any) -> list[dict[str, Any]]:
    if hasattr(module, "ANSWER_SCHEMA"):
        return [module.ANSWER_SCHEMA]
    return [module.answer_schema(3) if module.__name__ == "bgtasks.actors.generation" else module.answer_schema([4, 9])]


def walk(schema: dict[str, Any], path: str = "(root)") -> list[str]:
    problems = [f"{path}: {k} is not accepted in strict mode" for k in schema if k not in STRICT_KEYWORDS]
    if schema.get("type") == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            problems.append(f"{path}: objects must set additionalProperties false")
        if sorted(schema.get("required", [])) != sorted(props):
            problems.append(f"{path}: every property must be required")
        for name, sub in props.items():
            problems += walk(sub, f"{path}.{name}")
    if schema.get("type") == "array":
        problems += walk(schema["items"], f"{path}[]")
    return problems


@pytest.mark.parametrize("task_type", AI_TYPES, ids=lambda t: t.name)
def test_answer_schemas_are_strict_and_agree_with_the_fake(task_type: Any) -> None:
    module = importlib.import_module("bgtasks.actors." + task_type.name.replace("-", "_"))  # its actor module
    assert module.__doc__ and module.RESULT_SCHEMA and module.SCHEMA_NAME
    for schema in answer_schemas(module):
        assert walk(wire_schema(schema)) == []
        assert schema_problems(valid_instance(schema), schema) == []
    assert walk(wire_schema(module.RESULT_SCHEMA)) == []


@pytest.mark.parametrize("task_type", AI_TYPES, ids=lambda t: t.name)
def test_answer_schemas_bound_every_string_and_array(task_type: Any) -> None:
    module = importlib.import_module("bgtasks.actors." + task_type.name.replace("-", "_"))  # its actor module

    def unbounded(schema: dict[str, Any], path: str = "(root)") -> list[str]:
        kind = schema.get("type")
        found = []
        if kind == "string" and "maxLength" not in schema and "enum" not in schema:
            found.append(path)
        if kind == "array":
            found += [path] if "maxItems" not in schema else []
            found += unbounded(schema["items"], f"{path}[]")
        for name, sub in (schema.get("properties") or {}).items():
            found += unbounded(sub, f"{path}.{name}")
        return found

    for schema in answer_schemas(module):
        assert unbounded(schema) == []
