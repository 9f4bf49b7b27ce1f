"""The claim condition written once: the view claimable_tasks, used by every claim path (lock_tasks_to_claim(),
through which claim_tasks() and complete_and_claim() lock) and named beside the index that serves it.

Revision ID: 0019
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0019"
down_revision = "0020"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0019_claimable_tasks.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0019_downgrade.sql")
