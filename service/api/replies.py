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


# ---------------------------------------------------------------- provider budgets (docs/provider-budgets.md)

class BudgetInEffect(Reply):
    share: Annotated[float, Field(description="of the configured limits, after the provider's 429s (1: all)")]
    requests_per_minute: int | None
    tokens_per_minute: int | None


class BudgetCounted(Reply):
    requests: int
    tokens: int


class ProviderSaid(Reply):
    requests_left: Annotated[int | None, Field(description="x-ratelimit-remaining-requests, last seen")]
    tokens_left: Annotated[int | None, Field(description="x-ratelimit-remaining-tokens, last seen")]
    at: datetime | None


class Budget(Reply):
    """A provider budget as it stands (provider_budget_usage)."""

    provider: Annotated[str, Field(description="the base URL model calls go to")]
    model: Annotated[str, Field(description="a model name, or * for the provider's other models")]
    requests_per_minute: int | None
    tokens_per_minute: int | None
    window_seconds: Annotated[float, Field(description="the minute the limits count over (60)")]
    in_effect: BudgetInEffect
    counted: Annotated[BudgetCounted, Field(description="in the current window")]
    tasks_waiting: int
    waits: Annotated[int, Field(description="times a task was sent back to wait for this budget")]
    rate_limited: Annotated[int, Field(description="calls the provider still answered with 429")]
    blocked_until: datetime | None
    provider_said: ProviderSaid
    updated_at: datetime


class Budgets(Ok):
    budgets: list[Budget]


class OneBudget(Ok):
    budget: Budget


class BudgetKeyReply(Reply):
    provider: str
    model: str


class BudgetDeleted(Ok):
    deleted: BudgetKeyReply


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


# ---------------------------------------------------------------- tasks

Time = datetime | None
Text = str | None


class WaitingFor(Reply):
    """Why a pending task is not running yet (SQL task_waiting_reason(), docs/waiting.md)."""

    reason: Annotated[str, enum("queue_stopped", "dependencies", "scheduled", "retry_backoff", "rate_limited",
                                "provider_budget", "no_worker", "user_limit", "type_limit", "global_limit", "ready")]
    text: Annotated[str, Field(description="the reason in words")]
    run_at: datetime | None = None
    count: int | None = None
    task_ids: Annotated[list[str] | None, Field(description="dependencies not completed")] = None
    running: int | None = None
    limit: int | None = None
    retry: int | None = None
    max_retries: int | None = None
    user_id: str | None = None
    task_type: str | None = None
    provider: Annotated[str | None, Field(description="provider_budget: the budget's provider (base URL)")] = None
    model: Annotated[str | None, Field(description="provider_budget: the budget's model (* for every model)")] = None


class TaskFields(Reply):
    """A task as every endpoint shows it (service/api/serialize.py task_json)."""

    id: str
    task_type: str
    status: Annotated[str, enum(*STATUSES)]
    priority: int | None = None
    user_id: str | None = None
    project_id: Text = None
    project_name: Text = None
    project_path: Text = None
    label: Text = None
    description: Text = None
    payload: dict[str, Any] | None = None
    progress: Annotated[int, Field(ge=0, le=100)]
    total: int | None = None
    retry_count: int | None = None
    max_retries: int | None = None
    error_message: Text = None
    result_data: Any = None
    result: Any = None
    result_truncated: Annotated[bool | None, Field(description=(
        "lists only: resultData/result is a preview ({truncated, keys, counts, summary}) of a large result; "
        "GET /api/tasks/{id} has it"))] = None
    run_at: Time = None
    attempt: int | None = None
    worker_id: Text = None
    lease_expires_at: Annotated[Time, Field(description="while processing: when its holder's lease runs out")] = None
    cancel_reason: Text = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seq: Annotated[int | None, Field(description="change number (SSE event id)")] = None
    created_at: Time = None
    updated_at: Time = None
    started_at: Time = None
    completed_at: Time = None
    subscribe_token: Annotated[str | None, Field(description=(
        "in create responses only: a read token for this task (15 minutes), for a browser's EventSource "
        "(?token=)"))] = None


class Task(TaskFields):
    """A task of the resource API (/api/tasks)."""

    waiting_for: Annotated[WaitingFor | None, Field(description="null unless pending")] = None
    depends_on: Annotated[list[str] | None, Field(description="the tasks it depends on")] = None
    dependents: Annotated[list[str] | None, Field(description="GET /api/tasks/{id}: the tasks that depend on it")] = None


class SeedOneTask(TaskFields):
    """Task plus seed one's column names."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class SeedTwoTask(TaskFields):
    """A task as seed two shows it: status `failed` for error, its own column names, times in epoch ms."""

    status: Annotated[str, enum(*SEED_TWO_STATUSES)]
    user_id_: Annotated[str | None, Field(alias="user_id")] = None
    task_type_: Annotated[str | None, Field(alias="task_type")] = None
    created_at_: Annotated[int | None, Field(alias="created_at", description="epoch milliseconds")] = None
    updated_at_: Annotated[int | None, Field(alias="updated_at")] = None
    completed_at_: Annotated[int | None, Field(alias="completed_at")] = None


class Totals(Ok):
    """The list's totals (api/tasks.py totals_for)."""

    counts: Annotated[Counts, Field(description=(
        "by status, under every filter but status (task_counts for the owner and type scopes; a project, "
        "creation range or search counts at most 50,000 rows)"))]
    matching: Annotated[int, Field(ge=0, description="tasks matching every filter, status included")]
    counts_capped: Annotated[bool, Field(description=(
        "a search stopped counting at 50,000 rows: the figures are lower bounds"))]


class TaskList(Totals):
    tasks: list[Task]
    next_cursor: str | None


class Created(Ok):
    task: Task
    created: bool | None = None
    waiting: Annotated[str | None, Field(description="no live worker serves the type yet")] = None


class Batch(Ok):
    tasks: list[Task]
    count: int


class BulkDone(Ok):
    action: str | None = None
    count: int
    ids: list[str]
    more: bool | None = None
    skipped: list[str] | None = None


class OneTask(Ok):
    task: Task


class LinkedTask(Reply):
    id: str
    status: Annotated[str, enum(*STATUSES)]
    task_type: str | None = None
    label: str | None = None


class Attempt(Reply):
    attempt: int
    worker_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: Annotated[str | None, Field(description="the Python traceback (at most 16,384 characters)")] = None
    outcome: Annotated[str, enum("retried", "failed", "lease_expired", "rate_limited", "budget_wait")]
    started_at: datetime | None = None
    failed_at: datetime | None = None


class TaskDetail(Ok):
    task: Task
    upstream: list[LinkedTask] | None = None
    downstream: list[LinkedTask] | None = None
    attempts: list[Attempt] | None = None
    model_calls: list[dict[str, Any]] | None = None
    cost_usd: float | None = None


class Usage(Ok):
    usage: list[dict[str, Any]]


# ---------------------------------------------------------------- the seeds' shapes

class SeedOneTasks(Ok):
    tasks: list[SeedOneTask]
    task_counts: Counts


class SeedOneOneTask(Ok):
    task: SeedOneTask


class SeedOneDone(Ok):
    message: str | None = None
    task: SeedOneTask | None = None
    task_id: str | None = None
    deleted_count: int | None = None


class GenerationQueued(Ok):
    task_id: str
    task: SeedTwoTask | None = None


class SeedTwoTasks(Ok):
    tasks: list[SeedTwoTask]
    count: int | None = None
