"""The request models of the task endpoints (resource API and both seeds): create bodies, status changes, bulk
actions and the list filters, each field once with its bounds (service/api/fields.py), and the TaskSpec and
TaskFilter the store takes, built from a validated model and the caller."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from bgtasks import actors

from ..errors import Forbidden, ValidationFailed
from ..states import Status
from ..store.tasks import SORTS, TaskFilter, TaskSpec
from . import validation as v
from .auth import Principal
from .fields import (
    ANY,
    Q_TIME,
    TIME,
    Body,
    Checked,
    Int,
    Nested,
    QInt,
    QList,
    QStr,
    Query,
    Str,
    StrList,
    invalid,
)

MAX_BATCH = 1000
MAX_BULK_IDS = 1000
MAX_DEPENDENCIES = 100
STATUS_INPUT = "a status, or several separated by commas: " + ", ".join([*(s.value for s in Status), "failed"])


def _task_type(value: Any) -> actors.TaskType:
    return v.check_task_type(value, "")


def _payload(value: Any) -> dict[str, Any]:  # checked against its task type's schema by the model
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"expected a JSON object, got {v.json_type(value)}")
    return value


def _depends_on(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in value):
        raise invalid("expected an array of task ids")
    if len(value) > MAX_DEPENDENCIES:
        raise invalid(f"at most {MAX_DEPENDENCIES} dependencies per task")
    return list(dict.fromkeys(value))


def _status(value: Any) -> Status | None:
    return None if value is None else v.parse_status_value(value, "")


def _sort(values: list[str] | None) -> str:
    value = (values or [""])[-1] or "-createdAt"
    if value not in SORTS:
        raise invalid(f"unknown sort {value[:40]!r}; one of: {', '.join(SORTS)}")
    return value


TASK_TYPE = Checked(_task_type, {"type": "string"}, description="a type a worker published (GET /api/task-types)")
PAYLOAD = Checked(_payload, {"type": "object"}, description="checked against the task type's JSON schema")
DEPENDS_ON = Checked(_depends_on, {"type": "array", "items": {"type": "string", "maxLength": 64},
                                   "maxItems": MAX_DEPENDENCIES}, description="ids of tasks it waits for")
STATUS = Checked(_status, {"enum": [*(s.value for s in Status), "failed"]})
STATUSES = QList(lambda s: v.parse_status_value(s, "").value, {"type": "string"}, STATUS_INPUT)
TYPES = QList(lambda t: v.check_task_type(t, "").name, {"type": "string"}, "task type(s), comma-separated")
SORT = Checked(_sort, {"enum": list(SORTS)})
LIMIT = QInt(1, v.MAX_LIMIT, 100, "page size (default 100)")


# ---------------------------------------------------------------- creating tasks

class CreateTask(Body):
    """POST /api/tasks (and each item of a batch): the fields are checked in this order."""

    task_type: Annotated[actors.TaskType, TASK_TYPE]
    payload: Annotated[dict[str, Any], PAYLOAD] = Field(default_factory=dict)
    priority: Annotated[int | None, Int(-1000, 1000)] = None
    max_retries: Annotated[int | None, Int(0, 100)] = None
    project_id: Annotated[str | None, Str(200)] = None
    project_name: Annotated[str | None, Str(200)] = None
    project_path: Annotated[str | None, Str(4096)] = None
    label: Annotated[str | None, Str(200)] = None
    description: Annotated[str | None, Str(2000)] = None
    run_at: Annotated[Any, TIME] = None
    user_id: Annotated[str | None, Str(200)] = None
    depends_on: Annotated[list[str] | None, DEPENDS_ON] = None

    @model_validator(mode="after")
    def _fits_its_task_type(self) -> CreateTask:
        try:
            v.check_payload(self.task_type, self.payload, "payload")
        except ValidationFailed as exc:
            raise invalid(exc.message, exc.field) from None
        if self.task_type.needs_project:
            for name in ("projectId", "projectName", "projectPath"):
                if getattr(self, type(self).by_alias(name)) is None:
                    raise invalid("required", name)
        return self

    @classmethod
    def by_alias(cls, alias: str) -> str:
        return next(n for n, f in cls.model_fields.items() if f.alias == alias)

    def spec(self, principal: Principal, roots: list[Path], *, idempotency_key: str | None = None,
             where: str = "") -> TaskSpec:
        """The TaskSpec, with what depends on the caller: project roots, and creating for another user."""
        if self.project_path is not None:
            v.check_project_path(self.project_path, None if principal.local else roots, f"{where}projectPath",
                                 reveal_roots=principal.is_superuser)
        user_id = self.user_id
        if user_id is not None and principal.is_user(user_id):
            user_id = principal.user_id
        if user_id is not None and not principal.is_user(user_id) and not principal.is_superuser:
            raise Forbidden(f"{where}userId: only a superuser may create tasks for another user")
        return TaskSpec(
            task_type=self.task_type.name, user_id=(user_id or principal.user_id).lower(), payload=self.payload,
            priority=self.priority if self.priority is not None else 0,
            max_retries=self.max_retries if self.max_retries is not None else self.task_type.max_retries,
            project_id=self.project_id, project_name=self.project_name, project_path=self.project_path,
            label=self.label, description=self.description, run_at=self.run_at, idempotency_key=idempotency_key,
        )


class SeedOneCreate(CreateTask, extra="ignore"):
    """Seed one's POST: the same fields; others are ignored, as its document's clients send them."""


class BatchItem(CreateTask):
    idempotency_key: Annotated[str | None, Str(v.IDEMPOTENCY_KEY_MAX)] = None


class CreateBatch(Body):
    tasks: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_BATCH)]

    @field_validator("tasks", mode="before")
    @classmethod
    def _a_batch(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise invalid("expected a non-empty array of task objects")
        if len(value) > MAX_BATCH:
            raise invalid(f"at most {MAX_BATCH} tasks per batch")
        return value

    @model_validator(mode="after")
    def _keys_unique(self) -> CreateBatch:
        seen: set[str] = set()
        for i, item in enumerate(self.tasks):
            if item.idempotency_key is not None:
                if item.idempotency_key in seen:
                    raise invalid("repeated within the batch", f"tasks[{i}].idempotencyKey")
                seen.add(item.idempotency_key)
        return self


# ---------------------------------------------------------------- changing tasks

class StatusChange(Body):
    """PATCH /api/tasks/{id}: a status change, or a running task's progress (superusers)."""

    status: Annotated[Status | None, STATUS] = None
    error_message: Annotated[str | None, Str(10_000, allow_empty=True, nullable=True)] = None
    result_data: Annotated[Any, ANY] = None
    progress: Annotated[int | None, Int(0, 100, description="superusers only: a running task's progress; "
                                        "extends the holder's lease")] = None
    description: Annotated[str | None, Str(2000, description="superusers only, as progress")] = None


class SeedOneStatusChange(StatusChange, extra="ignore"):
    task_id: Annotated[str | None, Str(200, required=True)]


class CancelBody(Body):
    reason: Annotated[str | None, Str(500)] = None


class NoBody(Body):
    """No fields (a body, when sent, must be an empty object)."""


# ---------------------------------------------------------------- which tasks

class Filters(Query):
    status: Annotated[list[str] | None, STATUSES] = None
    project_id: Annotated[str | None, QStr(200)] = None
    user_id: Annotated[str | None, QStr(200, "superusers: any user; others: only themselves")] = None
    created_since: Annotated[Any, Q_TIME] = None
    created_until: Annotated[Any, Q_TIME] = None
    q: Annotated[str | None, QStr(200, "text in label or description")] = None

    def task_filter(self, principal: Principal, task_types: list[str] | None = None) -> tuple[TaskFilter, bool]:
        """(the filter, visible at all): a user asking for another user's tasks sees none, not an error."""
        user_id, visible = owner_filter(principal, self.user_id)
        return TaskFilter(user_id=user_id, statuses=self.status, task_types=task_types, project_id=self.project_id,
                          created_since=self.created_since, created_until=self.created_until,
                          search=self.q), visible


def owner_filter(principal: Principal, requested: str | None) -> tuple[str | None, bool]:
    """(user filter, visible at all). A user asking for another user's tasks sees none, not an error."""
    if principal.is_superuser:
        return requested, True
    if requested is not None and not principal.is_user(requested):
        return principal.user_id, False
    return principal.user_id, True


class TaskFilters(Filters):
    type: Annotated[list[str] | None, TYPES] = None


class ListQuery(TaskFilters):
    sort: Annotated[str, SORT] = "-createdAt"
    cursor: Annotated[str | None, QStr(10_000)] = None
    limit: Annotated[int, LIMIT] = 100


def _filter_value(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return ",".join(value)
    if value is not None and not isinstance(value, str):
        raise invalid("expected a string or an array of strings")
    return value


def _filter_text(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise invalid("expected a string")
    return value


LISTED = Checked(_filter_value, {"type": ["string", "array"], "items": {"type": "string"}})
TEXT = Checked(_filter_text, {"type": "string"})


class BulkFilter(Body):
    """A bulk action's `filter`: the list filters of GET /api/tasks, as JSON."""

    status: Annotated[str | None, LISTED] = None
    type: Annotated[str | None, LISTED] = None
    project_id: Annotated[str | None, TEXT] = None
    user_id: Annotated[str | None, TEXT] = None
    created_since: Annotated[str | None, TEXT] = None
    created_until: Annotated[str | None, TEXT] = None
    q: Annotated[str | None, TEXT] = None

    def params(self) -> dict[str, list[str]]:
        """As query parameters, for TaskFilters.read (which checks the values)."""
        return {k: [val] for k, val in self.model_dump(by_alias=True).items() if val is not None}


class BulkBody(Body):
    ids: Annotated[list[str] | None, StrList(f"at most {MAX_BULK_IDS} ids per call", max_items=MAX_BULK_IDS)] = None
    filter: Annotated[BulkFilter | None, Nested(BulkFilter, "expected an object")] = None
    reason: Annotated[str | None, Str(500)] = None

    @model_validator(mode="after")
    def _ids_or_filter(self) -> BulkBody:
        if self.ids is None and self.filter is None:
            raise invalid("give ids (an array of task ids), a filter (an object), or both", "ids")
        return self


class UsageQuery(Query, extra="forbid"):
    user_id: Annotated[str | None, QStr(200, "superusers only")] = None
    type: Annotated[list[str] | None, TYPES] = None
    since: Annotated[Any, Q_TIME] = None
    until: Annotated[Any, Q_TIME] = None


class TokenQuery(Query):
    token: Annotated[str | None, QStr(10_000, "a read token (POST /api/tokens, or subscribeToken) instead of a key")] = None


IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "schema": {"type": "string", "minLength": 1, "maxLength": v.IDEMPOTENCY_KEY_MAX}}
