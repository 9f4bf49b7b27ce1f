"""Workflows: schedules, task dependencies and chains, per-user and per-type limits, creation rate limit,
analytics (docs/workflows.md).

Revision ID: 0002
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(Path(__file__).with_suffix(".sql"))


def _claim_tasks_of_0001() -> str:
    """0001's claim_tasks, verbatim from its file, so a downgrade restores exactly what was replaced."""
    text = (_HERE / "0001_schema.sql").read_text()
    start = text.index("CREATE FUNCTION claim_tasks(")
    end = text.index("\n$$;", start) + len("\n$$;")
    return "CREATE OR REPLACE" + text[start + len("CREATE"):end]


def downgrade() -> None:
    op.execute(
        """
        DROP VIEW IF EXISTS task_analytics_by_type, task_analytics_by_user;
        DROP TRIGGER IF EXISTS background_tasks_release_dependents ON background_tasks;
        DROP TRIGGER IF EXISTS background_tasks_before_delete ON background_tasks;
        DROP INDEX IF EXISTS background_tasks_schedule_idx;
        DROP TABLE IF EXISTS task_type_limits, user_limits, task_dependencies, task_schedules CASCADE;
        DROP FUNCTION IF EXISTS task_analytics(timestamptz, timestamptz, text, text),
            check_creation_rate(text, integer), user_running_limit(text), user_creation_limit(text),
            task_upstream_results(text), add_task_dependencies(text, text[]),
            background_tasks_before_delete(), background_tasks_release_dependents(),
            cancel_downstream(text[], text[]), task_downstream(text[]), task_schedules_before_change();
        """
    )
    op.get_bind().connection.driver_connection.execute(_claim_tasks_of_0001())  # type: ignore[union-attr]
