"""Why a pending task waits: task_waiting_reason(task) and the view pending_tasks_why, one place for psql, the
API, the dashboard and the CLI; each failed attempt's traceback (task_attempt_errors.traceback, bounded).

Revision ID: 0012
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0012"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    op.execute("DROP FUNCTION record_attempt_traceback(text, integer, text)")
    op.execute("ALTER TABLE task_attempt_errors DROP COLUMN traceback")
    op.execute("DROP VIEW pending_tasks_why")
    op.execute("DROP FUNCTION task_waiting_reason(background_tasks)")
    op.execute("DROP FUNCTION waiting_duration_text(double precision)")
