"""The fleet's provider budgets as the model helper sees them (actors/model.py's ``Budget``): before each call,
reserve room in SQL (reserve_provider_budget(), migration 0016) or raise ``WaitingForBudget`` so the worker puts
the task back in the queue; after it, settle with the tokens used and what the provider said (headers, 429)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import psycopg

from .store import worker as store

if TYPE_CHECKING:
    from bgtasks.actors.model import ModelUsage, ProviderSignals

    from .task_context import TaskContext

log = logging.getLogger("bgtasks.budgets")


class FleetBudget:
    """One task's calls to one provider (the base URL its calls go to), counted in the shared budget tables.
    Every reservation reads the budget row, so a change at psql applies to the very next call anywhere."""

    def __init__(self, ctx: TaskContext, provider: str, hold_s: float) -> None:
        self.ctx = ctx
        self.provider = provider
        self.hold_s = hold_s

    async def reserve(self, model: str, estimate: int, usages: list[ModelUsage]) -> int | None:
        """A reservation id (None: no budget applies), or ``WaitingForBudget`` when the budget has no room."""
        from bgtasks.actors.errors import WaitingForBudget

        row: dict[str, Any] = await self.ctx.db(store.reserve_provider_budget, self.provider, model, self.ctx.id,
                                                estimate, self.hold_s)
        wait = float(row["wait_seconds"] or 0)
        if row["reservation_id"] is None and wait > 0:
            raise WaitingForBudget(
                f"waiting for the provider's budget (provider_budgets {row['budget_provider']}, model "
                f"{row['budget_model']}): {row['limited_by']}; this task's turn in {wait:.1f} s, no model call made",
                provider=row["budget_provider"], model=row["budget_model"], retry_after=wait, usage=usages)
        return row["reservation_id"]

    async def settle(self, ticket: Any, used_tokens: int | None, signals: ProviderSignals) -> None:
        """Best effort: a reservation left unsettled (database unreachable) still stops counting by itself,
        a window after the call's longest possible end."""
        if ticket is None:
            return
        ago = max(0.0, time.monotonic() - signals.seen_at) if signals.seen_at is not None else 0.0
        try:
            await self.ctx.db(store.settle_provider_budget, ticket, used_tokens, signals.rate_limited,
                              signals.retry_after_s, signals.requests_left, signals.requests_reset_s,
                              signals.tokens_left, signals.tokens_reset_s, ago)
        except psycopg.Error as exc:
            log.warning("provider budget reservation %s of task %s not settled: %s", ticket, self.ctx.id, exc)
