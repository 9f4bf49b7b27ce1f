"""Provider budgets over HTTP (/api/provider-budgets, superusers): list them as they stand, set one, remove one.
A change applies to the next model call on every worker: the budgets live in the database (migration 0016)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import Forbidden, NotFound
from ..store import budgets as store
from . import validation as v
from .auth import authenticate
from .contract import operation
from .fields import Body, Checked, Int, Q, Query, Str, invalid, read_body
from .replies import BudgetDeleted, Budgets, OneBudget
from .serialize import iso, ok
from .tasks import pool

_MAX = 1_000_000_000
PROVIDER = "the base URL model calls go to, e.g. https://api.openai.com/v1 (a trailing slash is dropped)"


def _window(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"expected a number of seconds, got {v.json_type(value)}")
    if not 0 < value <= 3600:
        raise invalid("a number of seconds above 0 and at most 3600 (60: per minute)")
    return float(value)


WINDOW = Checked(_window, {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                 description="the minute the limits count over, in seconds (left out: 60, or unchanged)")


class BudgetChange(Body):
    """Both limits are set by each PUT: one left out (or null) is not limited."""

    provider: Annotated[str | None, Str(500, required=True, description=PROVIDER)]
    model: Annotated[str | None, Str(200, description="a model name; left out: *, every model of the provider "
                                                      "without a row of its own")] = None
    requests_per_minute: Annotated[int | None, Int(1, _MAX, nullable=True)] = None
    tokens_per_minute: Annotated[int | None, Int(1, _MAX, nullable=True)] = None
    window_seconds: Annotated[float | None, WINDOW] = None


class BudgetKey(Query):
    provider: Annotated[str | None, Q(Str(500, required=True, description=PROVIDER))] = None
    model: Annotated[str | None, Q(Str(200, description="left out: *"))] = None


def budget_json(row: Mapping[str, Any]) -> dict[str, Any]:
    def number(value: Any) -> int | None:
        return None if value is None else int(value)

    return {
        "provider": row["provider"],
        "model": row["model"],
        "requestsPerMinute": row["requests_per_minute"],
        "tokensPerMinute": row["tokens_per_minute"],
        "windowSeconds": row["window_seconds"],
        "inEffect": {"share": row["share_in_effect"], "requestsPerMinute": number(row["requests_in_effect"]),
                     "tokensPerMinute": number(row["tokens_in_effect"])},
        "counted": {"requests": int(row["requests_counted"]), "tokens": int(row["tokens_counted"])},
        "tasksWaiting": int(row["tasks_waiting"]),
        "waits": int(row["waits"]),
        "rateLimited": int(row["rate_limited"]),
        "blockedUntil": iso(row["blocked_until"]),
        "providerSaid": {"requestsLeft": row["provider_requests_left"], "tokensLeft": row["provider_tokens_left"],
                         "at": iso(row["provider_observed_at"])},
        "updatedAt": iso(row["updated_at"]),
    }


async def _superuser(request: Request, what: str) -> None:
    principal = await authenticate(request)
    if not principal.is_superuser:
        raise Forbidden(f"provider budgets: only a superuser may {what}")


def _key(provider: str | None, model: str | None) -> tuple[str, str]:
    if provider is None:  # a query parameter left out is not checked by its field
        raise v.fail("provider", f"required: {PROVIDER}")
    return provider.strip().rstrip("/"), (model or "*").strip() or "*"


@operation("Provider budgets shared by every worker, with what they count now (superusers)", "limits", Budgets)
async def list_budgets(request: Request) -> JSONResponse:
    """GET /api/provider-budgets (superusers): every budget, with what it counts now."""
    await _superuser(request, "read provider budgets")
    return ok({"budgets": [budget_json(r) for r in await store.list_all(pool(request))]})


@operation("Create or change a provider budget (superusers); the next model call on every worker reads it",
           "limits", OneBudget, body=BudgetChange)
async def put_budget(request: Request) -> JSONResponse:
    """PUT /api/provider-budgets (superusers): {"provider", "model" ('*' when left out), "requestsPerMinute",
    "tokensPerMinute" (null or left out: not limited), "windowSeconds" (left out: 60, or unchanged)}."""
    await _superuser(request, "change provider budgets")
    body = await read_body(request, BudgetChange)
    provider, model = _key(body.provider, body.model)
    if body.requests_per_minute is None and body.tokens_per_minute is None:
        raise v.fail("body", "send requestsPerMinute, tokensPerMinute or both (to remove a budget, DELETE it)")
    await store.set_budget(pool(request), provider, model, body.requests_per_minute, body.tokens_per_minute,
                           body.window_seconds)
    row = await store.get(pool(request), provider, model)
    assert row is not None
    return ok({"budget": budget_json(row)})


@operation("Remove a provider budget (superusers): its waiting tasks run again at once", "limits", BudgetDeleted,
           query=BudgetKey)
async def delete_budget(request: Request) -> JSONResponse:
    """DELETE /api/provider-budgets?provider=…&model=… (superusers)."""
    await _superuser(request, "change provider budgets")
    key = BudgetKey.read(request.query_params)
    provider, model = _key(key.provider, key.model)
    if not await store.delete(pool(request), provider, model):
        raise NotFound(f"no provider budget for provider {provider!r}, model {model!r}")
    return ok({"deleted": {"provider": provider, "model": model}})
