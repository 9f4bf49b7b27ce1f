"""State-changing requests carry JSON: anything else is refused with 415 before a handler reads it. A page on
another site can send `text/plain` (or a typeless Blob) without a CORS preflight; JSON needs one.

The rule holds in every mode and for every credential (issue 16: state-changing endpoints accept only JSON
bodies), so a body is never read as JSON under another label: `curl -d` needs
`-H 'Content-Type: application/json'` (or `curl --json`), as every sample in the docs writes it."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import SAFE_METHODS, foreign_origin
from .errors import error_body


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonBodyMiddleware:
    """415 for a state-changing request whose Content-Type is not JSON, or that has none and comes from
    another origin (without a Content-Type the handler still refuses a body that does not parse as JSON)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            content_type = Headers(scope=scope).get("content-type")
            if content_type is not None and not _is_json(content_type):
                await _refuse(send, f"content-type: expected application/json, got {content_type[:100]!r}")
                return
            if content_type is None and foreign_origin(HTTPConnection(scope)):
                await _refuse(send, "content-type: required (application/json) for a request from another origin")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps(error_body(message, code="unsupported_media_type", field="content-type")).encode()
    await send({"type": "http.response.start", "status": 415,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
