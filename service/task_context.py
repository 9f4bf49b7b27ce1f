"""What an actor gets: its task's fields and payload, one progress helper (which is also where it learns
of cancellation), the model, usage accounting and database access. Actors stay thin; this is the seam."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import LeaseLost, SpendingCapReached, TaskCancelled
from .live_output import OutputCoalescer
from .provider_budgets import FleetBudget
from .store import worker as store

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from bgtasks.actors.model import ModelConfig, ModelUsage

    from .settings import Settings

T = TypeVar("T")


class TaskIO(Protocol):
    """What a context needs of its worker (service/worker/task_io.py): the fence, progress and output
    writes, the shared pool, the settings."""

    settings: Settings
    pool: ConnectionPool[Any]

    def fence_overdue(self) -> Any: ...

    def report_progress(self, ctx: TaskContext, percent: int, description: str | None) -> str | None: ...

    async def report_progress_async(self, ctx: TaskContext, percent: int,
                                    description: str | None) -> str | None: ...

    def write_output(self, ctx: TaskContext, text: str) -> None: ...


@dataclass
class TaskContext:
    id: str
    task_type: str
    attempt: int
    user_id: str
    payload: dict[str, Any]
    project_id: str | None
    project_name: str | None
    project_path: str | None
    retry_count: int
    max_retries: int
    io: TaskIO = field(repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    cancel_reason: str = ""

    # ------------------------------------------------------------------ cancellation and progress
    def check_cancelled(self) -> None:
        """Raise TaskCancelled if the task was cancelled (or is no longer ours: its lease could not be renewed
        in time, checked here too, so an actor woken from SIGSTOP stops at its next check)."""
        self.io.fence_overdue()
        if self.cancelled.is_set():
            raise TaskCancelled(self.cancel_reason or f"task {self.id} was cancelled")

    def progress_sync(self, percent: int, description: str | None = None) -> None:
        """Report progress (0-100) and what is happening; raises TaskCancelled if the task was cancelled.
        Best effort (TaskIO.report_progress): a database outage or a dead connection drops the report, it
        never fails the actor."""
        self.check_cancelled()
        self._settle(self.io.report_progress(self, max(0, min(100, int(percent))), self.attempt_note(description)))

    def _settle(self, status: str | None) -> None:
        """What a progress write's outcome means for the actor: go on, or stop (cancelled, deleted, lost)."""
        if status in ("ok", "dropped"):
            return
        if status in ("cancelled", None):
            self.cancelled.set()
            raise TaskCancelled(f"task {self.id} was {'deleted' if status is None else 'cancelled'}")
        raise LeaseLost(f"task {self.id} is {status}; this worker no longer holds attempt {self.attempt}")

    def attempt_note(self, description: str | None) -> str | None:
        """A retry's progress text says which attempt it is, so 30 -> 10 -> 30 reads as a new attempt."""
        if description is None or self.retry_count <= 0:
            return description
        return f"{description} (attempt {self.retry_count + 1} of {self.max_retries + 1})"

    async def progress(self, percent: int, description: str | None = None) -> None:
        """progress_sync's async face: the report joins the others waiting (one statement for all of them)
        instead of holding a thread and a connection per task."""
        self.check_cancelled()
        self._settle(await self.io.report_progress_async(self, max(0, min(100, int(percent))),
                                                         self.attempt_note(description)))

    # ------------------------------------------------------------------ database and model
    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(connection, *args)` with a pooled psycopg connection, off the event loop."""

        def call() -> T:
            with self.io.pool.connection() as conn:
                return fn(conn, *args)

        return await asyncio.to_thread(call)

    def upstream_results(self) -> dict[str, Any]:
        """Results of the tasks this one depends on, {"task id": result}: how a chain passes results on."""
        from .store import scheduler as workflow_store

        with self.io.pool.connection() as conn:
            return workflow_store.task_upstream_results(conn, self.id)

    @property
    def settings(self) -> Any:
        return self.io.settings

    def model_config(self) -> ModelConfig:
        """What this task's model calls use: the settings, with the task type's own output limits."""
        from bgtasks.actors import get_task_type
        from bgtasks.actors.model import ModelConfig

        s = self.io.settings
        kind = get_task_type(self.task_type)
        limit = (kind.max_output_tokens if kind else None) or s.bgtasks_model_max_output_tokens
        cap = (kind.max_output_tokens_cap if kind else None) or s.bgtasks_model_max_output_tokens_cap
        return ModelConfig(api_key=s.openai_api_key, base_url=s.openai_base_url, model=s.bgtasks_model,
                           timeout_s=s.bgtasks_model_timeout_s, max_model_retries=0,
                           max_output_tokens=min(limit, cap), max_output_tokens_cap=cap,
                           max_answer_chars=s.bgtasks_model_max_answer_chars)

    def require_model(self) -> None:
        """Fail at once, before any work, when no API key is configured (retrying cannot add one)."""
        from bgtasks.actors.model import require_api_key

        require_api_key(self.model_config())

    async def ask_model(self, *, system: str, user: str, schema_name: str, schema: dict[str, Any],
                        check: Callable[[dict[str, Any]], list[str]] | None = None) -> Any:
        """One structured model call (actors/model.py); every underlying API call's usage is stored.
        ``check``: problems the schema cannot express, re-asked like schema problems."""
        from bgtasks.actors.model import complete_json

        return await self._call_model(lambda config, on_text, budget: complete_json(
            config, system=system, user=user, schema_name=schema_name, schema=schema, check=check, on_text=on_text,
            budget=budget))

    async def generate_text(self, *, system: str, user: str) -> str:
        """One free-text model call, streamed: the task's subscribers see the text grow (``output`` events)
        while it is written; returns the whole text. Usage is stored like ``ask_model``'s."""
        from bgtasks.actors.model import complete_text

        return await self._call_model(lambda config, on_text, budget: complete_text(
            config, system=system, user=user, on_text=on_text, budget=budget))

    async def _call_model(
        self,
        call: Callable[[ModelConfig, Callable[[str], None], FleetBudget], Awaitable[tuple[T, list[ModelUsage]]]],
    ) -> T:
        """A model call as every call is made: cancellation and the spending cap checked first, each request
        counted against the fleet's provider budget, its text streamed to the live output, its usage stored
        whether it succeeds or fails (failed calls cost tokens too), and cancellation checked again after."""
        from bgtasks.actors.errors import ModelError

        config = self.model_config()
        self.check_cancelled()
        await self.check_spending_cap()
        output = self._output()
        try:
            result, usages = await call(config, output.add, self.budget(config))
        except ModelError as exc:
            await output.flush()
            await self._record_usage(exc.usage)
            raise
        except BaseException:
            await output.aclose()
            raise
        await output.flush()
        await self._record_usage(usages)
        self.check_cancelled()
        return result

    async def check_spending_cap(self) -> None:
        """Before a model call: SpendingCapReached (permanent) when the owner's model calls today (UTC) cost
        their daily cap (user_limits.max_cost_usd_per_day) or more."""
        cap, spent = await self.db(store.user_spending_today, self.user_id)
        if cap is not None and spent is not None and spent >= cap:
            raise SpendingCapReached(
                f"daily spending cap reached: user {self.user_id!r} spent ${spent:.4f} on model calls today (UTC) "
                f"of a cap of ${cap:.4f} (user_limits.max_cost_usd_per_day); no new model call was made. "
                "Raise the cap or retry the task after 00:00 UTC"
            )

    def budget(self, config: ModelConfig) -> FleetBudget:
        """The fleet's budget for this task's calls (provider_budgets; service/provider_budgets.py)."""
        return FleetBudget(self, config.endpoint, config.timeout_s)

    def _output(self) -> OutputCoalescer:
        """Where a streaming call's text goes: the task's live output, coalesced (service/live_output.py)."""

        async def write(text: str) -> None:
            await asyncio.to_thread(self.io.write_output, self, text)

        return OutputCoalescer(write, self.io.settings.bgtasks_output_interval_s)

    async def _record_usage(self, usages: Any) -> None:
        for u in usages:
            await self.db(store.record_model_call, self.id, self.attempt, u.model, u.prompt_tokens,
                          u.completion_tokens, u.total_tokens, u.duration_ms, u.cached_prompt_tokens)
