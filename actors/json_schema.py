"""What keeps a JSON value from matching a JSON Schema, in sentences a model can act on when it is asked again
(`questions[2].options: expected array, got string`). One engine for the whole service: `jsonschema` (Draft
2020-12), as the API checks payloads; this module only words its errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


def schema_problems(instance: Any, schema: dict[str, Any], *, limit: int = 20) -> list[str]:
    """What keeps ``instance`` from matching ``schema``, as ``path: problem`` sentences (empty when it matches).
    A value of the wrong type is reported once (not also against its enum, bounds, ...)."""
    return _sentences(_validator(json.dumps(schema)).iter_errors(instance), limit)


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    """Task schemas are few and fixed: each is checked (and its validator built) once."""
    schema = json.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _sentences(errors: Iterable[ValidationError], limit: int) -> list[str]:
    found = list(errors)
    mistyped = {tuple(e.absolute_path) for e in found if e.validator == "type"}
    out: list[str] = []
    said: set[tuple[Any, ...]] = set()  # (path, keyword): jsonschema reports each missing property alone
    for error in found:
        path = tuple(error.absolute_path)
        if (path in mistyped and error.validator != "type") or (path, error.validator) in said:
            continue
        if error.validator in ("required", "additionalProperties"):
            said.add((path, error.validator))
        out.extend(f"{_where(path)}: {problem}" for problem in _problems(error))
    return out[:limit]


def _where(path: tuple[Any, ...]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return text or "(root)"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass in Python, not in JSON
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    names = {dict: "object", list: "array", str: "string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _problems(error: ValidationError) -> list[str]:
    """One jsonschema error in our words (its keyword decides; an unlisted keyword keeps jsonschema's)."""
    keyword, expected, value = error.validator, error.validator_value, error.instance
    if keyword == "required":
        return [f"missing required property '{name}'" for name in expected if name not in value]
    if keyword == "additionalProperties":
        allowed = set(error.schema.get("properties") or {})
        return [f"unexpected property '{name}'" for name in value if name not in allowed]
    return [_problem(error)]


def _problem(error: ValidationError) -> str:
    keyword, expected, value = error.validator, error.validator_value, error.instance
    if keyword == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return f"expected {' or '.join(kinds)}, got {_json_type(value)}"
    if keyword == "enum":
        return f"expected one of {json.dumps(expected)}, got {json.dumps(value)}"
    if keyword == "const":
        return f"expected {json.dumps(expected)}, got {json.dumps(value)}"
    if keyword in ("anyOf", "oneOf"):
        if not error.context:  # oneOf matched more than one branch
            return "matches more than one of the allowed shapes"
        return f"matches none of the allowed shapes (closest: {_closest(error.context)})"
    limits = {
        "minItems": ("at least", "items", len), "maxItems": ("at most", "items", len),
        "minLength": ("at least", "characters", len), "maxLength": ("at most", "characters", len),
    }
    if keyword in limits:
        bound, unit, size = limits[keyword]
        return f"expected {bound} {expected} {unit}, got {size(value)}"
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
              "exclusiveMaximum": "less than"}
    if keyword in bounds:
        return f"expected {bounds[keyword]} {expected}, got {value}"
    if keyword == "pattern":
        return f"does not match pattern {expected!r}"
    return error.message


def _closest(context: list[ValidationError]) -> str:
    """The first problem of the branch that came closest (the fewest problems)."""
    branches: dict[int, list[ValidationError]] = {}
    for sub in context:
        branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    best = min(branches.values(), key=len)
    return _sentences(best, 1)[0]


def wire_schema(schema: Any) -> Any:
    """``schema`` as sent to the model: strict mode rejects ``maxLength``, so it moves into the description
    (the model reads it there) and stays in the schema we check the answer against."""
    if isinstance(schema, list):
        return [wire_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: wire_schema(v) for k, v in schema.items() if k != "maxLength"}
    if "maxLength" in schema:
        bound = f"at most {schema['maxLength']} characters"
        out["description"] = f"{schema['description']} ({bound})" if schema.get("description") else bound
    if isinstance(schema.get("properties"), dict):  # property names are not schemas; keep every one
        out["properties"] = {k: wire_schema(v) for k, v in schema["properties"].items()}
    return out
