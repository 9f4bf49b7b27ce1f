"""Text PostgreSQL can store: it refuses NUL (U+0000) in `text` and `jsonb`, so a NUL byte in the path or a
query parameter is answered here, for every endpoint and before any handler, with a 422 naming where it was
(JSON bodies are checked field by field in validation.py). What slips past both is caught once more where
driver errors become HTTP answers (errors.py: SQLSTATE 22021 / 22P05 -> 422)."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_body


def nul_field(scope: Scope) -> str | None:
    """Where a NUL character is in this request's path or query string (the parameter's name), or None."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in value or "\x00" in name:
            return name.replace("\x00", "") or "query"
    return None


class NulTextMiddleware:
    """422 (as a NUL in a JSON field) for a request (HTTP or WebSocket) with a NUL character in its path or query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and (field := nul_field(scope)) is not None:
            message = f"{field}: contains a NUL character (%00), which no text field accepts"
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4400, "reason": message[:120]})
                return
            body = json.dumps(error_body(message, code="invalid", field=field)).encode()
            await send({"type": "http.response.start", "status": 422,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
