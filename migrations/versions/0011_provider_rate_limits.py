"""Provider rate limits reschedule a task without spending retries: postpone_rate_limited(),
background_tasks.provider_wait_seconds, task_attempt_errors outcome 'rate_limited'; task lists show
task_result_preview() of a large result.

Revision ID: 0011
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0011"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    op.execute("DROP FUNCTION task_result_preview(jsonb)")
    op.execute("DROP FUNCTION postpone_rate_limited(text, integer, text, text, double precision, double precision)")
    op.execute("DELETE FROM task_attempt_errors WHERE outcome = 'rate_limited'")
    op.execute("ALTER TABLE task_attempt_errors DROP CONSTRAINT task_attempt_errors_outcome_check")
    op.execute(
        "ALTER TABLE task_attempt_errors ADD CONSTRAINT task_attempt_errors_outcome_check "
        "CHECK (outcome IN ('retried', 'failed', 'lease_expired'))"
    )
    op.execute(
        "COMMENT ON COLUMN task_attempt_errors.outcome IS 'retried (back to pending after backoff), failed (task "
        "ended in error), lease_expired (worker lost; retried or failed).'"
    )
    op.execute("ALTER TABLE background_tasks DROP COLUMN provider_wait_seconds")
