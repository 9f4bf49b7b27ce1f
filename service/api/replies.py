"""The reply models of the API contract: what /openapi.json says each endpoint answers (service/api/contract.py).
The handlers build these shapes in service/api/serialize.py; tests/integration/test_api_fuzz.py checks every
reply against them (schemathesis' response_schema_conformance)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from ..states import Status

STATUSES = [s.value for s in Status]
SEED_TWO_STATUSES = [("failed" if s == "error" else s) for s in STATUSES]


def enum(*values: str, description: str | None = None) -> Any:
    """A string field documented as one of `values` (the reply is built elsewhere; this only documents it)."""
    return WithJsonSchema({"enum": list(values), **({"description": description} if description else {})})


class Reply(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Ok(Reply):
    """Every success reply: `success: true` and the fields of the endpoint."""

    success: Literal[True]


class Error(Reply):
    """Every error reply: the sentence, the field it names (or null) and a code (docs/api.md)."""

    success: Literal[False]
    error: str
    field: str | None = None
    code: str


class Counts(Reply):
    pending: int
    processing: int
    completed: int
    error: int
    cancelled: int
    total: int


class SeedTwoCounts(Reply):
    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    total: int


# ---------------------------------------------------------------- queue

class QueueSettings(Reply):
    is_active: bool
    poll_interval: int
    max_concurrent_tasks: int | None
    retry_base_delay_ms: int | None = None
    retry_max_delay_ms: int | None = None
    last_poll_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class QueueChanged(Ok):
    queue_settings: QueueSettings
    message: str | None = None


class QueueState(Ok):
    queue_settings: QueueSettings
    task_counts: Counts


# ---------------------------------------------------------------- limits

class LimitValues(Reply):
    max_running: int | None = None
    max_created_per_minute: int | None = None
    max_schedules: int | None = None
    min_schedule_period_seconds: int | None = None
    max_streams: int | None = None


class LimitsView(Reply):
    user_id: str
    limits: LimitValues
    own: LimitValues | None
    updated_at: datetime | None = None


class UserLimits(Ok, LimitsView):
    pass


class AllLimits(Ok):
    limits: list[LimitsView]


# ---------------------------------------------------------------- read tokens

class Token(Ok):
    token: str
    expires_at: datetime
    ttl: int
    scope: Annotated[str, enum("tasks", "my-tasks")]
    task_ids: list[str] | None
    user_id: str | None = None


class Me(Ok):
    user_id: str
    is_superuser: bool


class Deleted(Ok):
    deleted: Annotated[str | int, Field(description="the deleted item's id")]
