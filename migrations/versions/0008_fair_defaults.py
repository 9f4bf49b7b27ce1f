"""Default caps (creation rate, schedules per user, shortest schedule period) in user_limits, overridable per
user column by column; fair claiming across owners (lock_tasks_to_claim).

Revision ID: 0008
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0008"
down_revision = "0010"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0008_fair_defaults.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0008_downgrade.sql")
