"""Operations: SQL console functions (enqueue, clear, pause, resume, limit, retention) and views.

Revision ID: 0003
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    op.execute(
        """
        DROP VIEW IF EXISTS usage_by_user, task_type_stats, stuck_tasks, queue_health, task_type_counts,
                            task_status_counts;
        DROP FUNCTION IF EXISTS worker_stale_after(), purge_finished_tasks(interval, integer),
            set_concurrency_limit(integer), resume_queue(), pause_queue(), clear_completed(text, text),
            enqueue_task(text, text, jsonb, integer, integer, text, text, text, text, text, timestamptz, text);
        DROP INDEX IF EXISTS task_attempt_errors_failed_idx;
        """
    )
