"""complete_and_claim() in one statement when no limit applies; leaner statement triggers on UPDATE.

Revision ID: 0005
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0005_one_statement_claim.sql")


def downgrade() -> None:
    op.execute("DROP FUNCTION complete_and_claim(text[], integer[], jsonb[], text, integer, double precision)")
    run_sql_file(HERE / "0004_complete_and_claim.sql")
    run_sql_file(HERE / "0005_downgrade.sql")
