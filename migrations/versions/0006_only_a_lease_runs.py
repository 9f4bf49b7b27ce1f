"""Only a lease makes a task running: a move to processing that is not a claim gets a lease; a processing row
without one is refused (CHECK). Schedule names are unique per owner, not globally.

Revision ID: 0006
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0006"
down_revision = "0011"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0006_only_a_lease_runs.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0006_downgrade.sql")
