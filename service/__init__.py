"""bgtasks: long AI jobs in the background, tracked in PostgreSQL, watched live over SSE.

The public API is what this module exports; names load on first use, so `import bgtasks` stays light."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ApiError", "AsyncClient", "Client", "StreamLost", "Task", "TaskEvent", "TaskInfo", "TaskPage",
           "ValidationFailed", "enqueue", "task_type"]

if TYPE_CHECKING:
    from .enqueue import enqueue
    from .errors import ValidationFailed
    from .http_client import ApiError, AsyncClient, Client, StreamLost, TaskEvent, TaskInfo, TaskPage
    from .task_types import Task, task_type

_EXPORTS = {
    "Task": "task_types", "task_type": "task_types",  # defining task types
    "enqueue": "enqueue", "ValidationFailed": "errors",  # creating tasks in the application's transaction
    # the HTTP client
    "Client": "http_client", "AsyncClient": "http_client", "ApiError": "http_client", "StreamLost": "http_client",
    "TaskInfo": "http_client", "TaskEvent": "http_client", "TaskPage": "http_client",
}


if not TYPE_CHECKING:  # hidden from type checkers, so a name bgtasks does not export is an error there

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'bgtasks' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
