"""complete_and_claim(): finish and claim in one round trip.

Revision ID: 0004
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    op.execute("DROP FUNCTION complete_and_claim(text[], integer[], jsonb[], text, integer, double precision)")
