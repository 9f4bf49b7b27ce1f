"""The claim fills every free slot when a type is at its limit: claim_tasks() claims again for the slots a round
left empty because rows over a per-type limit were dropped.

Revision ID: 0015
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0015_fill_free_slots.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0015_downgrade.sql")
