"""Provider budgets shared by the fleet: provider_budgets (requests and tokens per minute per provider and model),
reservations counted in SQL before each model call and settled after it, tasks that wait for a budget put back
in the queue (postpone_for_budget(), outcome budget_wait, waiting reason provider_budget).

Revision ID: 0016
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0016"
down_revision = "0019"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0016_provider_budgets.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0016_downgrade.sql")
