"""Each endpoint's contract, declared once on its handler (`@operation(...)`): its query, body and reply models
(service/api/models.py). The handler validates with those models (fields.read_body, Query.read), and
/openapi.json is derived from them and the routes table (service/api/openapi.py), so neither is written twice."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import CoreSchema

S = dict[str, Any]
Handler = Callable[..., Awaitable[Any]]
REF = "#/components/schemas/{model}"

ERRORS = {
    "400": "malformed body (not JSON, not an object)", "401": "no or bad credentials",
    "403": "not allowed (queue settings, processing and progress need a superuser)",
    "404": "no such task (or not yours)",
    "409": "the state machine refuses the change, or a per-user limit is reached (limit_reached)",
    "413": "body too large",
    "422": "a field is invalid (named in `field`)", "429": "over the creation rate limit (Retry-After)",
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


@dataclass(frozen=True)
class Operation:
    """What /openapi.json says of one handler. `ok` is the reply model of `status`; `also` more replies;
    `path` adds to path parameters ({name: {"schema": ..., "description": ...}}); `headers` are header parameters as OpenAPI writes them."""

    summary: str
    tag: str
    ok: type[BaseModel]
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    path: dict[str, S] = field(default_factory=dict)
    headers: Sequence[S] = ()
    also: dict[int, type[BaseModel]] = field(default_factory=dict)
    description: str | None = None


def operation(summary: str, tag: str, ok: type[BaseModel], **details: Any) -> Callable[[Handler], Handler]:
    """Attach an Operation to a handler; the routes table gives its path and method."""

    def attach(handler: Handler) -> Handler:
        handler.__operation__ = Operation(summary, tag, ok, **details)  # type: ignore[attr-defined]
        return handler

    return attach


def operation_of(handler: Any) -> Operation | None:
    return getattr(handler, "__operation__", None)


class _Untitled(GenerateJsonSchema):
    """Properties without pydantic's generated titles ("Maxretries"): their names say it."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def _models(op: Operation) -> list[type[BaseModel]]:
    return [m for m in (op.ok, op.body, op.query, *op.also.values()) if m is not None]


def schemas(operations: Sequence[Operation], extra: Sequence[type[BaseModel]] = ()) -> tuple[
        dict[type[BaseModel], S], S]:
    """(model -> its schema or $ref, components) for every model the operations name."""
    models = list(dict.fromkeys([*extra, *(m for op in operations for m in _models(op))]))
    keyed, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF, by_alias=True,
                                        schema_generator=_Untitled)
    return {m: keyed[(m, "validation")] for m in models}, defs.get("$defs", {})


def _parameters(where: str, model: type[BaseModel]) -> list[S]:
    schema = model.model_json_schema(ref_template=REF, by_alias=True, schema_generator=_Untitled)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        prop.pop("default", None)
        description = prop.pop("description", "")
        out.append({"name": name, "in": where, "required": name in required, "schema": prop,
                    **({"description": description} if description else {})})
    return out


def path_item(path: str, op: Operation, refs: dict[type[BaseModel], S]) -> S:
    """The OpenAPI operation object of `op` at `path`."""
    def reply(model: type[BaseModel]) -> S:
        return {"description": "success", "content": {"application/json": {"schema": refs[model]}}}

    responses: S = {str(op.status): reply(op.ok)}
    responses.update({str(code): reply(model) for code, model in op.also.items()})
    for code, text in ERRORS.items():
        responses[code] = {"description": text, "content": {"application/json": {"schema": ERROR_REF}}}
    parameters = [{"name": n, "in": "path", "required": True, **({"schema": {"type": "string"}} | s)}
                  for n in re.findall(r"{(\w+)}", path) for s in [op.path.get(n, {})]]
    parameters += [*(_parameters("query", op.query) if op.query else []), *op.headers]
    item: S = {"summary": op.summary, "tags": [op.tag], "responses": responses}
    if op.description:
        item["description"] = op.description
    if parameters:
        item["parameters"] = parameters
    if op.body is not None:
        item["requestBody"] = {"required": op.body_required,
                               "content": {"application/json": {"schema": refs[op.body]}}}
    return item
