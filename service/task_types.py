"""The public way to define a task type: `@bgtasks.task_type(...)` over `fn(task, payload)`, and `Task`, the
view of a running task an application's function gets. Registering adds an entry to bgtasks.actors'
registry, the one the worker declares actors from and the API validates against."""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from bgtasks import actors
from bgtasks.errors import PermanentTaskError

if TYPE_CHECKING:
    from bgtasks.task_context import TaskContext

F = TypeVar("F", bound=Callable[..., Any])
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")  # as background_tasks.task_type's CHECK


class Task:
    """A running task as its function sees it: ids, attempt, progress (which is also where cancellation is
    noticed), the model helper and upstream results. Nothing of the worker behind it."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TaskContext) -> None:
        self._ctx = ctx

    @property
    def id(self) -> str:
        return self._ctx.id

    @property
    def task_type(self) -> str:
        return self._ctx.task_type

    @property
    def user_id(self) -> str:
        return self._ctx.user_id

    @property
    def attempt(self) -> int:
        """1 on the first run, counting each retry."""
        return self._ctx.retry_count + 1

    @property
    def max_retries(self) -> int:
        return self._ctx.max_retries

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as stored (JSON), before any model parsed it."""
        return self._ctx.payload

    @property
    def cancelled(self) -> bool:
        return self._ctx.cancelled.is_set()

    def check_cancelled(self) -> None:
        """Raise bgtasks' cancellation error if the task was cancelled; let it propagate."""
        self._ctx.check_cancelled()

    async def progress(self, percent: int, description: str | None = None) -> None:
        """Report progress (0-100) and what is happening; raises if the task was cancelled meanwhile."""
        await self._ctx.progress(percent, description)

    def progress_sync(self, percent: int, description: str | None = None) -> None:
        """progress() for sync task functions."""
        self._ctx.progress_sync(percent, description)

    async def ask_model(self, *, system: str, user: str, schema_name: str, schema: dict[str, Any],
                        check: Callable[[dict[str, Any]], list[str]] | None = None) -> Any:
        """One structured call to the configured model; its token usage is stored with the task. ``check``:
        problems the schema cannot express (a list of sentences), re-asked like schema problems."""
        return await self._ctx.ask_model(system=system, user=user, schema_name=schema_name, schema=schema,
                                         check=check)

    async def generate_text(self, *, system: str, user: str) -> str:
        """One free-text call to the configured model, streamed: the task's subscribers see the text grow
        (``output`` events) while the model writes it; returns the whole text. Its token usage is stored."""
        return await self._ctx.generate_text(system=system, user=user)

    def require_model(self) -> None:
        """Fail the task at once when no model API key is configured (before work a retry could not save)."""
        self._ctx.require_model()

    def upstream_results(self) -> dict[str, Any]:
        """Results of the tasks this one depends on, {"task id": result}."""
        return self._ctx.upstream_results()

    def __repr__(self) -> str:
        return f"<Task {self.task_type} {self.id} attempt {self.attempt}>"


def _payload_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model annotated on the function's second parameter, if any."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: treat the payload as a dict
        return None
    hint = hints.get(params[1].name)
    return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None


def _result_schema(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """The JSON Schema of the function's return annotation, when it has one pydantic can describe."""
    try:
        hint = typing.get_type_hints(fn).get("return")
        if hint is None or hint is type(None) or hint is Any:
            return None
        schema = TypeAdapter(hint).json_schema()
    except Exception:  # an annotation pydantic cannot describe: the result is not declared
        return None
    return schema


def _result(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _parse(model: type[BaseModel] | None, task_type: str, payload: dict[str, Any]) -> Any:
    if model is None:
        return payload
    try:
        return model.model_validate(payload)
    except ValidationError as exc:  # a row written past the API's check: cannot work, do not retry
        raise PermanentTaskError(f"invalid payload for task type {task_type!r}: {exc}") from None


def task_type(
    name: str,
    *,
    description: str = "",
    schema: dict[str, Any] | None = None,
    max_retries: int = 3,
    time_limit_s: float = 900.0,
    needs_project: bool = False,
    diagnostic: bool = False,
) -> Callable[[F], F]:
    """Register `fn(task, payload)` (async or sync) as task type `name`.

    The payload's JSON Schema comes from `schema` if given, else from the pydantic model annotated on the
    payload parameter (which the function then receives parsed), else any JSON object. `needs_project`: a
    task must name a project (projectId, projectName, projectPath under BGTASKS_PROJECT_ROOTS; seed one's
    per-project types); `diagnostic`: a type for checking a deployment, shown apart in the dashboard.
    Returns `fn` unchanged.
    """

    if not NAME.match(name):
        raise ValueError(f"task type name {name!r}: a lowercase letter, then up to 39 of a-z, 0-9, _ and -")

    def register(fn: F) -> F:
        model = _payload_model(fn)
        payload_schema = schema or (model.model_json_schema() if model else {"type": "object"})
        arity = len(inspect.signature(fn).parameters)

        def args(ctx: TaskContext) -> tuple[Any, ...]:
            task = Task(ctx)
            return (task, _parse(model, name, ctx.payload)) if arity >= 2 else (task,)

        run: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(ctx: TaskContext) -> Any:
                return _result(await fn(*args(ctx)))
            run = run_async
        else:
            @functools.wraps(fn)
            def run_sync(ctx: TaskContext) -> Any:
                return _result(fn(*args(ctx)))
            run = run_sync
        actors.register(actors.TaskType(
            name, f"{fn.__module__}:{fn.__qualname__}", description or (fn.__doc__ or "").strip().split("\n")[0],
            payload_schema, time_limit_s=time_limit_s, max_retries=max_retries, function=run,
            result_schema=_result_schema(fn), needs_project=needs_project, diagnostic=diagnostic,
        ))
        return fn

    return register
