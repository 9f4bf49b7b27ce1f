"""/openapi.json is derived from the contract each handler declares (service/api/contract.py): every /api route
is an operation of the document, and a body model's bounds are what the model checks (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from bgtasks.api import openapi
from bgtasks.api.app import ROUTES
from bgtasks.api.contract import operation_of
from bgtasks.api.queue import QueuePatch
from bgtasks.errors import ValidationFailed

DOC: dict[str, Any] = openapi.DOCUMENT
STREAMS = {"/api/subscribeToTask", "/api/events"}  # described by hand (openapi_streams.py)


def test_every_api_route_declares_its_contract_and_is_documented() -> None:
    for route in ROUTES:
        if not isinstance(route, Route) or not route.path.startswith("/api/") or route.path in STREAMS:
            continue
        assert operation_of(route.endpoint) is not None, f"{route.path}: its handler has no @operation"
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in DOC["paths"][route.path], (route.path, method)


def test_a_documented_bound_is_the_bound_the_model_checks() -> None:
    poll = DOC["components"]["schemas"]["QueuePatch"]["properties"]["pollInterval"]
    QueuePatch.parse({"pollInterval": poll["minimum"]})
    QueuePatch.parse({"pollInterval": poll["maximum"]})
    for outside in (poll["minimum"] - 1, poll["maximum"] + 1):
        with pytest.raises(ValidationFailed, match=f"between {poll['minimum']} and {poll['maximum']}"):
            QueuePatch.parse({"pollInterval": outside})
