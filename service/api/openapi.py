"""The OpenAPI 3.1 document served at /openapi.json, derived from the routes table (`ROUTES`, app.py) and the
contract each handler declares (@operation: its query, body and reply models, service/api/contract.py); only the
streaming endpoints are described by hand (openapi_streams.py). tests/integration/test_api_fuzz.py runs
schemathesis over it against the real app."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from . import contract, replies
from .openapi_streams import stream_paths, stream_schemas

S = dict[str, Any]


def build(routes: Sequence[BaseRoute]) -> S:
    """The document: one operation per route and method whose handler declares its contract (@operation);
    the streams' from openapi_streams.py."""
    operations = [(r.path, method.lower(), op) for r in routes if isinstance(r, Route)
                  for method in sorted(r.methods or ()) if method != "HEAD"
                  if (op := contract.operation_of(r.endpoint)) is not None]
    # The streams' messages refer to these models; every operation's models come along.
    streamed: list[type[BaseModel]] = [replies.Error, replies.Task, replies.SeedTwoTask]
    refs, components = contract.schemas([op for *_, op in operations], streamed)
    paths: S = {}
    for path, method, op in operations:
        paths.setdefault(path, {})[method] = contract.path_item(path, op, refs)
    paths.update(stream_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "bgtasks", "version": "1",
                 "description": "Background AI tasks: the resource API, and both seed documents' endpoints. "
                                "Errors are {success: false, error, field, code}. See docs/api.md."},
        "paths": paths,
        "components": {
            "schemas": {**components, **stream_schemas()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an API key from `bgtasks keys create`"}},
        },
        "security": [{"bearer": []}],
    }


@functools.cache
def document() -> S:
    from .app import ROUTES  # the routes table imports this module's handler

    return build(ROUTES)


def __getattr__(name: str) -> Any:
    if name == "DOCUMENT":  # built on first use: the routes table is defined after this module
        return document()
    raise AttributeError(name)


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document())
