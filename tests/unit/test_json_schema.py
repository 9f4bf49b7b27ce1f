"""One JSON Schema engine: the worker's check of payloads and model output (actors/json_schema.py) and the API's
check of payloads (service/api/validation.py) are both jsonschema, so they accept and refuse the same values,
keywords the old hand-written checker skipped included (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from bgtasks.actors import TaskType
from bgtasks.actors.json_schema import schema_problems
from bgtasks.api import validation as v
from bgtasks.errors import ValidationFailed

SCHEMAS: list[tuple[dict[str, Any], Any, str]] = [  # schema, a value it refuses, the sentence for the re-ask
    ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}},
     {"tags": ["a", "a"]}, "tags: ['a', 'a'] has non-unique elements"),
    ({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5}}},
     {"n": 7}, "n: 7 is not a multiple of 5"),
    ({"type": "object", "minProperties": 1}, {}, "(root): {} should be non-empty"),
    ({"type": "object", "properties": {"n": {"type": "integer", "maximum": 50}}},
     {"n": 500}, "n: expected at most 50, got 500"),
]


@pytest.mark.parametrize(("schema", "refused", "sentence"), SCHEMAS)
def test_the_worker_and_the_api_refuse_the_same_payloads(schema: dict[str, Any], refused: Any,
                                                         sentence: str) -> None:
    assert schema_problems(refused, schema) == [sentence]
    task_type = TaskType(name="t", handler="m:f", description="", payload_schema=schema)
    with pytest.raises(ValidationFailed):
        v.check_payload(task_type, refused)


def test_every_missing_and_every_unexpected_property_is_named_once() -> None:
    schema = {"type": "object", "required": ["a", "b"], "properties": {"a": {}, "b": {}},
              "additionalProperties": False}
    assert schema_problems({"c": 1, "d": 2}, schema) == [
        "(root): missing required property 'a'", "(root): missing required property 'b'",
        "(root): unexpected property 'c'", "(root): unexpected property 'd'"]


def test_a_value_of_the_wrong_type_is_one_problem() -> None:
    assert schema_problems("x", {"type": "integer", "enum": [1, 2], "minimum": 1}) == [
        "(root): expected integer, got string"]
