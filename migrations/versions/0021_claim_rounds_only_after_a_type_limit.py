"""claim_tasks() runs a further round only after one that claimed a type under task_type_limits (0015 ran one
after every short round under any limit).

Revision ID: 0021
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0021"
down_revision = "0016"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0021_claim_rounds_only_after_a_type_limit.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0021_downgrade.sql")
