"""Workflows: schedules, task dependencies, per-user and per-type limits.

Revision ID: 0002
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from migrations.sqlfile import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS task_type_limits, user_limits, task_dependencies, task_schedules CASCADE")
