"""Search and every list sort served by an index (pg_trgm for q=), so listing stays flat at a million rows.

Revision ID: 0014
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0014_flat_list_costs.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0014_downgrade.sql")
