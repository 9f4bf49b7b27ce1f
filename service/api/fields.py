"""The field types of the API contract (service/api/models.py): each is one check and the JSON Schema that
documents it, so /openapi.json and validation cannot disagree. Use them as `Annotated[int | None, Int(0, 9)]`.
Body.parse turns pydantic's errors into one ValidationFailed (the first, in field order), so the error body
keeps its shape: field (`tasks[0].label`), code, sentence."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from starlette.requests import Request

from ..errors import ValidationFailed
from . import validation as v

S = dict[str, Any]
M = TypeVar("M", bound="Body")
QT = TypeVar("QT", bound="Query")


def invalid(message: str, field: str = "") -> PydanticCustomError:
    """An error raised inside a check: `field` (relative to where the check runs) is appended to its location."""
    return PydanticCustomError("invalid", "{reason}", {"reason": message, "field": field})


@dataclass(frozen=True)
class Checked:
    """Field metadata: `check` validates (value -> value; ValidationFailed or `invalid` for a bad one) and
    `schema` is what /openapi.json says of the field."""

    check: Callable[[Any], Any]
    schema: S
    description: str | None = field(default=None, kw_only=True)

    def _run(self, value: Any) -> Any:
        try:
            return self.check(value)
        except ValidationFailed as exc:  # a nested model's failure keeps its field (relative to this one)
            raise invalid(exc.message, exc.field) from None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self._run)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> S:
        return {**self.schema, **({"description": self.description} if self.description else {})}


@dataclass(frozen=True)
class _ModelField(Checked):
    """Checked whose schema is a model's (a $ref in /openapi.json)."""

    model: type[BaseModel] | None = field(default=None, kw_only=True)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> S:
        assert self.model is not None
        return handler(self.model.__pydantic_core_schema__)


def _nullable(schema: S, nullable: bool) -> S:
    if not nullable:
        return schema
    kind = schema.get("type")
    return {**schema, "type": [kind, "null"]} if isinstance(kind, str) else {"anyOf": [schema, {"type": "null"}]}


# ---------------------------------------------------------------- body fields (null is the same as absent)

def Str(max_len: int, *, required: bool = False, allow_empty: bool = False, nullable: bool = False,
        pattern: str | None = None, description: str | None = None) -> Checked:
    """A string of at most `max_len` characters PostgreSQL can store; not blank unless `allow_empty`."""

    def check(value: Any) -> str | None:
        if value is None:
            if required:
                raise invalid("required")
            return None
        if not isinstance(value, str):
            raise invalid(f"expected a string, got {v.json_type(value)}")
        v.check_text(value, "")
        if len(value) > max_len:
            raise invalid(f"longer than {max_len} characters")
        if not allow_empty and not value.strip():
            raise invalid("must not be empty")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise invalid(f"must match {pattern}")
        return value

    schema: S = {"type": "string", "maxLength": max_len, **({"pattern": pattern} if pattern else {})}
    return Checked(check, _nullable(schema, nullable), description=description)


def Int(lo: int, hi: int, *, required: bool = False, nullable: bool = False,
        description: str | None = None) -> Checked:
    """An integer from `lo` to `hi` (a JSON 5.0 is 5; true is not 1)."""

    def check(value: Any) -> int | None:
        if value is None:
            if required:
                raise invalid("required")
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"expected an integer, got {v.json_type(value)}")
        if not lo <= value <= hi:
            raise invalid(f"must be between {lo} and {hi}")
        return value

    schema = _nullable({"type": "integer", "minimum": lo, "maximum": hi}, nullable)
    return Checked(check, schema, description=description)


def _bool(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise invalid(f"expected true or false, got {v.json_type(value)}")
    return value


def _time(value: Any) -> datetime | None:
    return None if value is None else v.parse_time(value, "")


def _any(value: Any) -> Any:
    return value


BOOL = Checked(_bool, {"type": "boolean"})
TIME = Checked(_time, {"type": "string", "format": "date-time"})
ANY = Checked(_any, {})


def StrList(count: str, *, min_items: int = 0, max_items: int, unique: bool = False,
            description: str | None = None) -> Checked:
    """An array of strings (ids): `count` is the sentence for too few or too many; `unique` drops repeats
    before counting."""

    def check(value: Any) -> list[str] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
            raise invalid("expected an array of task id strings")
        items = list(dict.fromkeys(value)) if unique else value
        if not min_items <= len(items) <= max_items:
            raise invalid(count)
        return items

    schema: S = {"type": "array", "items": {"type": "string"}, "maxItems": max_items,
                 **({"minItems": min_items} if min_items else {})}
    return Checked(check, schema, description=description)


def Nested(model: type[Body], not_an_object: str) -> Checked:
    """An object field read as `model` (null: absent), its failures named below this field (`filter.q`)."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid(not_an_object)
        return model.parse(value)

    return _ModelField(check, {}, model=model)


def OneOf(*allowed: str, message: str | None = None, required: bool = False,
          description: str | None = None) -> Checked:
    def check(value: Any) -> str | None:
        if (value is not None or required) and value not in allowed:
            raise invalid(message or f"expected one of {', '.join(allowed)}, got {str(value)[:40]!r}")
        return value

    return Checked(check, {"enum": list(allowed)}, description=description)


# ---------------------------------------------------------------- query parameters (a list of strings each)

def _last(values: list[str] | None) -> str | None:
    """A parameter given more than once: its last value (as Starlette's QueryParams.get); "" is absent."""
    return values[-1] if values and values[-1] != "" else None


def Q(body_field: Checked) -> Checked:
    """A body field's check as a query parameter's: on its last value, "" being absent."""
    return Checked(lambda values: body_field.check(_last(values)), body_field.schema,
                   description=body_field.description)


def QStr(max_len: int = 200, description: str | None = None, pattern: str | None = None) -> Checked:
    return Q(Str(max_len, allow_empty=True, pattern=pattern, description=description))


def QInt(lo: int, hi: int, default: int, description: str | None = None) -> Checked:
    def check(values: list[str] | None) -> int:
        value = _last(values)
        if value is None:
            return default
        if not re.fullmatch(r"[+-]?\d{1,12}", value.strip()):
            raise invalid(f"expected an integer between {lo} and {hi}, got {value[:30]!r}")
        if not lo <= int(value) <= hi:
            raise invalid(f"must be between {lo} and {hi}")
        return int(value)

    return Checked(check, {"type": "integer", "minimum": lo, "maximum": hi}, description=description)


def QList(each: Callable[[str], str], schema: S, description: str | None = None) -> Checked:
    """A parameter that may repeat or hold a comma-separated list (at most 50 values): None when absent."""

    def check(values: list[str] | None) -> list[str] | None:
        items: list[str] = []
        for value in values or []:
            v.check_text(value, "")
            items.extend(x.strip() for x in value.split(",") if x.strip())
        if len(items) > 50:
            raise invalid("more than 50 values")
        return sorted({each(x) for x in items}) or None

    return Checked(check, schema, description=description)


Q_TIME = Q(TIME)


# ---------------------------------------------------------------- models and reading them

def _where(loc: tuple[int | str, ...], extra: str = "") -> str:
    parts = [*loc, *([extra] if extra else [])]
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def first_failure(exc: ValidationError, prefix: str = "") -> ValidationFailed:
    """The first of pydantic's errors as ours: its location as a field name, its sentence."""
    error = exc.errors(include_url=False)[0]
    ctx = error.get("ctx") or {}
    if error["type"] == "missing":
        message = "required"
    elif error["type"] == "invalid":
        message = str(ctx["reason"])
    else:  # a plain type without a check of ours (a nested model's shell): pydantic's sentence
        message = error["msg"]
    field = prefix + _where(tuple(error["loc"]), str(ctx.get("field", "")))
    return ValidationFailed(field, message)


class Body(BaseModel):
    """A JSON request body: camelCase names, unknown fields refused (an `extra="ignore"` model accepts them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _an_object_of_known_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise invalid(f"expected a JSON object, got {v.json_type(data)}")
        if cls.model_config.get("extra") == "forbid":
            known = {f.alias or name for name, f in cls.model_fields.items()}
            for name in data:
                if name not in known:
                    raise invalid(f"unknown field; known fields: {', '.join(sorted(known))}", str(name))
        return data

    @classmethod
    def parse(cls: type[M], data: Any, prefix: str = "") -> M:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            failure = first_failure(exc, prefix)
            raise (failure if failure.field else ValidationFailed("body", failure.message)) from None

    def given(self) -> set[str]:
        """The JSON names of the fields the request sent (null included)."""
        return {type(self).model_fields[name].alias or name for name in self.model_fields_set}


class Query(Body):
    """Query parameters: each field reads every value of its name (repeated or not)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    @classmethod
    def read(cls: type[QT], params: Mapping[str, str]) -> QT:
        getlist = getattr(params, "getlist", None)
        return cls.parse({k: (getlist(k) if getlist else [params[k]]) for k in params})


async def read_body(request: Request, model: type[M]) -> M:
    """The request body as `model`: 400 for what is not a JSON object, 422 naming the first invalid field."""
    return model.parse(await v.read_json_object(request))


async def read_optional_body(request: Request, model: type[M]) -> M:
    """As read_body, where no body at all is an empty object."""
    raw = await request.body()
    return model.parse(v.parse_json_object(raw) if raw.strip() else {})
