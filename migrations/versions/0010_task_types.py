"""task_types: the task types workers publish (name, schemas, limits, who published them), and which live
workers serve each (task_type_workers); publish_task_types() does both in one statement. Claims take only the
types the claiming worker serves.

Revision ID: 0010
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0010_task_types.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0010_downgrade.sql")
    op.execute("DROP FUNCTION worker_task_types(text)")
    op.execute("DROP VIEW task_types_served")
    op.execute("DROP FUNCTION publish_task_types(text, jsonb)")
    op.execute("DROP TABLE task_type_workers")
    op.execute("DROP TABLE task_types")
