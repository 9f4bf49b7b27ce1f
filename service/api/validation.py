"""The value checks under the API contract (service/api/fields.py and the models use them): the body as a JSON
object PostgreSQL can store, times, statuses, task ids, task types and payloads (their JSON schemas, with
jsonschema), project paths under the configured roots, list cursors, the Idempotency-Key header. Each failure is
a ValidationFailed (or BadRequest) that names the field; nothing unchecked reaches SQL."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
from starlette.requests import Request

from bgtasks import actors

from ..catalog import CATALOG
from ..errors import TaskNotFound, ValidationFailed
from ..states import Status, parse_status
from ..store.tasks import SORTS
from .errors import BadRequest

TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_LIMIT = 1000
MAX_JSON_DEPTH = 64
IDEMPOTENCY_KEY_MAX = 200


def fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(field, message)


# ---------------------------------------------------------------- JSON bodies

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def check_json_value(value: Any, field: str, depth: int = 0) -> None:
    """Refuse what PostgreSQL's jsonb cannot store: NUL characters, lone surrogates, and absurd nesting."""
    if depth > MAX_JSON_DEPTH:
        raise fail(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_text(k, field)
            check_json_value(v, f"{field}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_json_value(v, f"{field}[{i}]", depth + 1)


def parse_json_object(raw: bytes, field: str = "body") -> dict[str, Any]:
    """`raw` as a JSON object, or BadRequest (400) that says what is wrong with it."""
    if not raw.strip():
        raise BadRequest(field, "empty; expected a JSON object", code="invalid_json")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise BadRequest(field, "not UTF-8 text", code="invalid_json") from None
    except RecursionError:
        raise BadRequest(field, "JSON nested too deeply", code="invalid_json") from None
    except ValueError as exc:
        raise BadRequest(field, f"not valid JSON ({str(exc).splitlines()[0][:200]})", code="invalid_json") from None
    if not isinstance(value, dict):
        raise BadRequest(field, f"expected a JSON object, got {json_type(value)}", code="invalid_json")
    try:
        for key, item in value.items():  # top-level fields are named by themselves: "label", "payload.k"
            check_text(key, field)
            check_json_value(item, key, 1)
    except RecursionError:
        raise BadRequest(field, "JSON nested too deeply", code="invalid_json") from None
    return value


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (any Content-Type: seed one's fetch calls send none)."""
    return parse_json_object(await request.body())


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def check_text(value: str, field: str) -> str:
    if "\x00" in value:
        raise fail(field, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise fail(field, "contains an unpaired surrogate (not valid Unicode)") from None
    return value


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 time; without an offset it is UTC."""
    if not isinstance(value, str):
        raise fail(field, f"expected an ISO 8601 time string, got {json_type(value)}")
    check_text(value, field)
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise fail(field, f"not an ISO 8601 time: {value[:50]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        when.astimezone(UTC)
    except OverflowError:
        raise fail(field, "out of range") from None
    return when


def parse_status_value(value: Any, field: str = "status") -> Status:
    if not isinstance(value, str):
        raise fail(field, f"expected a status string, got {json_type(value)}")
    try:
        return parse_status(value)
    except ValueError as exc:
        raise fail(field, str(exc)) from None


def check_task_id(value: str) -> str:
    """A task id as it appears in a path or query: anything that cannot be an id is simply not found."""
    if not TASK_ID.match(value):
        raise TaskNotFound(value[:80])
    return value


def check_task_type(value: Any, field: str = "taskType") -> actors.TaskType:
    """A type a worker published (or one defined in this process); catalog.ready() re-reads the table first."""
    if not isinstance(value, str):
        raise fail(field, f"expected a task type string, got {json_type(value)}")
    task_type = CATALOG.get(value)
    if task_type is None:
        names = CATALOG.names()
        known = ", ".join(names[:50]) + (f" and {len(names) - 50} more" if len(names) > 50 else "")
        known = known or "none yet (start a worker)"
        raise fail(field, f"unknown task type {value[:50]!r}: no worker has published it; known: {known}")
    return task_type


def check_payload(task_type: actors.TaskType, payload: Any, field: str = "payload") -> dict[str, Any]:
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise fail(field, f"expected a JSON object, got {json_type(payload)}")
    validator = jsonschema.Draft202012Validator(task_type.payload_schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise fail(f"{field}{where}".lstrip(".") or "body", error.message[:300])
    return payload


def check_project_path(path: str, roots: list[Path] | None, field: str = "projectPath", *,
                       reveal_roots: bool = False) -> str:
    """The path must name a directory inside one of the configured project roots (None: any directory the
    process can read, for the local user in dev mode); the roots are named only to superusers."""
    from bgtasks.actors.errors import ProjectPathError
    from bgtasks.actors.project_files import resolve_project_path

    try:
        return str(resolve_project_path(path, roots, reveal_roots=reveal_roots))
    except ProjectPathError as exc:
        raise fail(field, str(exc)) from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a too-long name: not a readable project path
        raise fail(field, f"cannot be resolved: {type(exc).__name__}") from None


# ---------------------------------------------------------------- headers

def idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > IDEMPOTENCY_KEY_MAX or not value.isprintable():
        raise fail("Idempotency-Key", f"must be 1-{IDEMPOTENCY_KEY_MAX} printable characters")
    return value


# ---------------------------------------------------------------- cursors

def encode_cursor(sort: str, key: Any, task_id: str) -> str:
    shown = key.isoformat() if isinstance(key, datetime) else key
    raw = json.dumps([sort, shown, task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None, sort: str) -> tuple[Any, str] | None:
    """The (sort key, id) a cursor continues after; ValidationFailed for a cursor this sort did not make."""
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        made_for, key, task_id = json.loads(raw)
        if made_for != sort or not isinstance(task_id, str) or not TASK_ID.match(task_id):
            raise ValueError
        if SORTS[sort][1] == "priority":
            if isinstance(key, bool) or not isinstance(key, int) or not -(2**31) <= key < 2**31:  # int4
                raise ValueError
            return key, task_id
        if not isinstance(key, str):
            raise ValueError
        when = datetime.fromisoformat(key)
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        return when.astimezone(UTC), task_id  # OverflowError: outside the calendar once in UTC
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise fail("cursor", "not a cursor from this list (use nextCursor as given, with the same sort)") from None
