"""Read tokens for browsers: `POST /api/tokens` mints one (for named tasks, or "my-tasks"), and every create
endpoint hands back a `subscribeToken` for the task it made (service/tokens.py signs and verifies them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import TaskNotFound
from ..settings import Settings
from ..store import tasks as store
from ..tokens import MAX_TASKS, mint
from . import validation as v
from .auth import Principal, authenticate
from .contract import operation
from .fields import Body, Int, OneOf, StrList, read_body
from .replies import Token
from .serialize import ok

MY_TASKS = "my-tasks"


def _mint(request: Request, principal: Principal, task_ids: list[str] | None, ttl_s: float) -> tuple[str, float]:
    state = request.app.state
    return mint(state.token_secret, user_id=principal.user_id, key_id=principal.key_id,
                is_superuser=principal.is_superuser, task_ids=task_ids, now=state.clock(), ttl_s=ttl_s)


def subscribe_token(request: Request, principal: Principal, task_id: str) -> str:
    """A read token for one task the caller just created, valid for BGTASKS_READ_TOKEN_TTL_S."""
    settings: Settings = request.app.state.settings
    return _mint(request, principal, [task_id], settings.bgtasks_read_token_ttl_s)[0]


def with_subscribe_token(request: Request, principal: Principal, task: dict[str, Any]) -> dict[str, Any]:
    """A created task's JSON with its `subscribeToken` added (the other fields as they were)."""
    return {**task, "subscribeToken": subscribe_token(request, principal, task["id"])}


class TokenRequest(Body):
    task_ids: Annotated[list[str] | None, StrList(f"between 1 and {MAX_TASKS} task ids", min_items=1,
                                                  max_items=MAX_TASKS, unique=True,
                                                  description="the tasks the token reads (give this or scope)")] = None
    scope: Annotated[str | None, OneOf(MY_TASKS, message=f"expected '{MY_TASKS}'",
                                      description="every task of the caller (give this or taskIds)")] = None
    ttl: Annotated[int | None, Int(1, 2**31 - 1, description="lifetime in seconds (default 900; at most "
                                   "BGTASKS_READ_TOKEN_MAX_TTL_S, 3600)")] = None


@operation("Mint a read token for a browser: reads the named tasks (or my-tasks) on GET /api/tasks/{id}, "
           "/api/subscribeToTask, /api/events and /api/ws (?token=), never writes", "accounts", Token,
           status=201, body=TokenRequest)
async def create_token(request: Request) -> JSONResponse:
    """POST {taskIds: [...]} or {scope: "my-tasks"}, optional ttl (seconds): a read token (201)."""
    principal = await authenticate(request)  # a read token cannot mint another: only real credentials
    body = await read_body(request, TokenRequest)
    settings: Settings = request.app.state.settings
    ttl = body.ttl
    if ttl is not None and ttl > settings.bgtasks_read_token_max_ttl_s:  # a bound of this deployment
        raise v.fail("ttl", f"must be between 1 and {settings.bgtasks_read_token_max_ttl_s}")
    ttl = settings.bgtasks_read_token_ttl_s if ttl is None else ttl
    raw_ids, scope = body.task_ids, body.scope
    if (raw_ids is None) == (scope is None):
        raise v.fail("taskIds", f"give taskIds (an array of 1 to {MAX_TASKS} task ids) or scope: '{MY_TASKS}'")
    task_ids: list[str] | None = None
    if raw_ids is not None:
        task_ids = raw_ids
        for task_id in task_ids:
            v.check_task_id(task_id)
        visible = await store.visible_task_ids(request.app.state.pool, task_ids, principal.owner)
        missing = [i for i in task_ids if i not in visible]
        if missing:
            raise TaskNotFound(missing[0])  # another user's task is answered like a missing one
    token, expires = _mint(request, principal, task_ids, ttl)
    return ok({
        "token": token,
        "expiresAt": datetime.fromtimestamp(expires, UTC).isoformat(),
        "ttl": ttl,
        "scope": MY_TASKS if task_ids is None else "tasks",
        "taskIds": task_ids,
        "userId": principal.user_id,
    }, status_code=201)
