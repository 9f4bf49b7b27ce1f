"""Per-user limits over HTTP (/api/limits, /api/limits/{user}): anyone reads the limits that apply to them;
superusers read and change everyone's, and the defaults (user '*'). A change applies at the next claim or
create, on every process: the limits live in the database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import Forbidden, NotFound
from ..store import limits as store
from . import validation as v
from .auth import Principal, authenticate
from .contract import operation
from .fields import Body, Int, read_body
from .replies import AllLimits, UserLimits
from .serialize import iso, ok
from .tasks import pool

# JSON name -> (column, smallest value). Largest: a generous bound that still fits an integer column.
FIELDS = {
    "maxRunning": ("max_running", 0),
    "maxCreatedPerMinute": ("max_created_per_minute", 0),
    "maxSchedules": ("max_schedules", 0),
    "minSchedulePeriodSeconds": ("min_schedule_period_s", 1),
    "maxStreams": ("max_streams", 0),
}
_MAX = 1_000_000_000
USER = {"user_id": {"description": "a user id, or * for the defaults"}}


class LimitsChange(Body):
    """null: back to the default (for '*': no limit); a field left out keeps its value."""

    max_running: Annotated[int | None, Int(0, _MAX, nullable=True)] = None
    max_created_per_minute: Annotated[int | None, Int(0, _MAX, nullable=True)] = None
    max_schedules: Annotated[int | None, Int(0, _MAX, nullable=True)] = None
    min_schedule_period_seconds: Annotated[int | None, Int(1, _MAX, nullable=True)] = None
    max_streams: Annotated[int | None, Int(0, _MAX, nullable=True)] = None


def _values(row: Mapping[str, Any] | None) -> dict[str, int | None] | None:
    if row is None:
        return None
    return {name: row[column] for name, (column, _) in FIELDS.items()}


async def _view(request: Request, user_id: str) -> dict[str, Any]:
    p = pool(request)
    own = await store.own(p, user_id)
    return {
        "userId": user_id,
        "limits": _values(await store.effective(p, user_id)),
        "own": _values(own),
        "updatedAt": iso(own["updated_at"]) if own else None,
    }


def _user(request: Request) -> str:
    user = v.check_text(request.path_params["user_id"], "userId")
    if not user.strip() or len(user) > 200:
        raise v.fail("userId", "1-200 characters")
    return user


def _superuser(principal: Principal, what: str) -> None:
    if not principal.is_superuser:
        raise Forbidden(f"limits: only a superuser may {what}")


@operation("Per-user limits: a superuser sees every row (the defaults, user '*', first); others their own",
           "limits", AllLimits)
async def list_limits(request: Request) -> JSONResponse:
    """GET /api/limits: a superuser sees every row (the defaults first); anyone else, their own limits."""
    principal = await authenticate(request)
    if not principal.is_superuser:
        return ok({"limits": [await _view(request, principal.user_id)]})
    rows = await store.list_all(pool(request))
    return ok({"limits": [await _view(request, r["user_id"]) for r in rows]})


@operation("The limits that apply to a user (own; superusers: anyone)", "limits", UserLimits, path=USER)
async def get_limits(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    user = _user(request)
    if not principal.is_superuser and user != principal.user_id:
        raise NotFound(f"no limits of user {user!r} for you to see")
    return ok(await _view(request, user))


@operation("Set a user's limits (superusers); null: back to the default", "limits", UserLimits, path=USER,
           body=LimitsChange)
async def put_limits(request: Request) -> JSONResponse:
    """PUT /api/limits/{user} (superusers): set the given limits; null puts one back to the default (for '*':
    no limit). Fields left out keep their value."""
    principal = await authenticate(request)
    _superuser(principal, "change limits")
    user = _user(request)
    body = await read_body(request, LimitsChange)
    given = body.given()
    if not given:
        raise v.fail("body", f"send at least one of {', '.join(FIELDS)}")
    values = body.model_dump(by_alias=True)
    changes = {column: values[name] for name, (column, _) in FIELDS.items() if name in given}
    await store.set_limits(pool(request), user, changes)
    return ok(await _view(request, user))


@operation("Remove a user's own limits (superusers): the defaults apply", "limits", UserLimits, path=USER)
async def delete_limits(request: Request) -> JSONResponse:
    """DELETE /api/limits/{user} (superusers): the defaults apply to that user again."""
    principal = await authenticate(request)
    _superuser(principal, "change limits")
    user = _user(request)
    if user == store.DEFAULTS:
        raise v.fail("userId", "the defaults ('*') cannot be deleted; PUT new values instead")
    if await store.delete(pool(request), user) is None:
        raise NotFound(f"user {user!r} has no limits of their own")
    return ok(await _view(request, user))
