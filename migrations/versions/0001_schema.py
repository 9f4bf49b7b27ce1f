"""Initial schema: tasks, queue settings, history, accounts, usage, questions, and their SQL functions.

Revision ID: 0001
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS task_counts, questions, task_model_calls, api_keys, bgtasks_workers,
                             task_attempt_errors, task_queue_settings, background_tasks CASCADE;
        DROP FUNCTION IF EXISTS task_transition_allowed(task_status, task_status),
            background_tasks_before_change(), notify_in_chunks(text, text[]),
            background_tasks_after_insert(), background_tasks_after_update(),
            background_tasks_after_delete(), background_tasks_after_truncate(),
            task_queue_settings_changed(), task_retry_delay(integer),
            claim_tasks(text, integer, double precision), complete_task(text, integer, jsonb),
            complete_tasks(text[], integer[], jsonb[]),
            fail_task(text, integer, text, text, boolean, double precision), release_task(text, integer),
            extend_leases(text, text[], double precision), reap_expired_leases(integer),
            cancel_task(text, text), retry_task(text);
        DROP TYPE IF EXISTS task_status;
        """
    )
