"""Errors to HTTP, in one table: every BgtasksError and Starlette's own 404/405 become a JSON body
`{"success": false, "error": "...", "field": ..., "code": "..."}`; and the body-size limit, enforced before
a handler reads a byte too many."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import db
from ..errors import (
    AuthError,
    BgtasksError,
    Forbidden,
    IllegalTransition,
    LimitReached,
    NotFound,
    RateLimited,
    SchemaOutdated,
    ValidationFailed,
)
from ..logs import outage_logger

log = outage_logger("bgtasks.api")


class BadRequest(ValidationFailed):
    """The body is not what any endpoint could read: not JSON, not UTF-8, not an object (HTTP 400)."""

    def __init__(self, field: str, message: str, code: str = "bad_request") -> None:
        super().__init__(field, message)
        self.code = code


class PayloadTooLarge(BgtasksError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body: larger than the limit of {limit} bytes (BGTASKS_MAX_BODY_BYTES)")
        self.limit = limit
        self.field = "body"


# (exception class, HTTP status, code), most specific first: the first match wins.
STATUS_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (BadRequest, 400, "bad_request"),
    (ValidationFailed, 422, "invalid"),
    (AuthError, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (IllegalTransition, 409, "illegal_transition"),
    (LimitReached, 409, "limit_reached"),
    (PayloadTooLarge, 413, "too_large"),
    (RateLimited, 429, "rate_limited"),
    (SchemaOutdated, 503, "schema_outdated"),
)
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def error_body(message: str, *, code: str, field: str | None = None) -> dict[str, Any]:
    return {"success": False, "error": message, "field": field, "code": code}


def error_response(exc: BaseException) -> JSONResponse:
    """The response for one of our errors (anything else is a bug: 500)."""
    match = next(((status, code) for cls, status, code in STATUS_TABLE if isinstance(exc, cls)), None)
    if match is None:
        return JSONResponse(error_body("internal error", code="internal"), status_code=500)
    status, code = match
    code = getattr(exc, "code", code)
    field = getattr(exc, "field", None)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, SchemaOutdated):
        headers["Retry-After"] = "30"
    return JSONResponse(error_body(str(exc), code=code, field=field), status_code=status, headers=headers)


async def _bgtasks_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return JSONResponse(
        error_body(message, code=_HTTP_CODES.get(exc.status_code, "http_error")),
        status_code=exc.status_code, headers=dict(exc.headers or {}),
    )


async def _bug(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal error", code="internal"), status_code=500)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """The database is restarting, failing over, unreachable or out of connections: a 503 the client can
    retry, never a 500. One log line per reason per 10 s through an outage, not one per request."""
    reason = db.unavailable_reason(exc) or "the database is unavailable"
    log.warning("database unavailable on %s %s: %s (%s: %s)", request.method, request.url.path, reason,
                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", extra={"throttle_key": reason})
    return JSONResponse(error_body(f"{reason}; retry shortly", code="unavailable"), status_code=503,
                        headers={"Retry-After": "1"})


async def _text_postgres_refuses(request: Request, exc: Exception) -> Response:
    """A string PostgreSQL cannot store (a NUL character, SQLSTATE 22021 / 22P05) that got past the input
    checks: the caller's input, so a 422, never a 500 (logged: a check is missing somewhere)."""
    log.warning("text refused by PostgreSQL on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(error_body("input: contains a character PostgreSQL cannot store (NUL, U+0000)",
                                   code="invalid", field="input"), status_code=422)


async def _table_refuses(request: Request, exc: Exception) -> Response:
    """A CHECK constraint refused a value the input checks let through: the caller's input (422, naming the
    column when the constraint is named <table>_<column>_check), never a 500; logged, a check is missing."""
    constraint = str(getattr(exc, "constraint_name", None) or "")
    table = str(getattr(exc, "table_name", None) or "")
    field = constraint.removeprefix(f"{table}_").removesuffix("_check") or "input"
    log.warning("CHECK constraint %s refused input on %s %s", constraint, request.method, request.url.path)
    return JSONResponse(error_body(f"{field}: not a value the table accepts ({constraint})", code="invalid",
                                   field=field), status_code=422)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    asyncpg.exceptions.CheckViolationError: _table_refuses,
    BgtasksError: _bgtasks_error,
    HTTPException: _http_error,
    asyncpg.exceptions.CharacterNotInRepertoireError: _text_postgres_refuses,
    asyncpg.exceptions.UntranslatableCharacterError: _text_postgres_refuses,
    **dict.fromkeys(db.UNAVAILABLE_ERRORS, _database_unavailable),
    Exception: _bug,
}


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413: at once when Content-Length says so, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "content-length: not a number", "bad_request")
                    return
                if declared > self.max_bytes:
                    await self._refuse(send, 413, str(PayloadTooLarge(self.max_bytes)), "too_large")
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _refuse(send: Send, status: int, message: str, code: str) -> None:
        body = json.dumps(error_body(message, code=code, field="body")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
