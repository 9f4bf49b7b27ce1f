"""Live partial output of running tasks (task_output, append_task_output(), cleanup when a task finishes);
the cost of model calls (model_prices, task_model_calls.cost_usd and cached_prompt_tokens, model_call_cost()).

Revision ID: 0013
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0013_live_output.sql")


def downgrade() -> None:
    op.execute("DROP FUNCTION user_spending_today(text)")
    op.execute("DROP INDEX task_model_calls_user_idx")
    op.execute("ALTER TABLE user_limits DROP COLUMN max_cost_usd_per_day")
    op.execute("DROP FUNCTION model_call_cost(text, integer, integer, integer)")
    op.execute("ALTER TABLE task_model_calls DROP COLUMN cost_usd, DROP COLUMN cached_prompt_tokens")
    op.execute("DROP TABLE model_prices")
    op.execute("DROP TRIGGER background_tasks_output_cleanup ON background_tasks")
    op.execute("DROP FUNCTION task_output_cleanup()")
    op.execute("DROP FUNCTION append_task_output(text, integer, text, integer)")
    op.execute("DROP TABLE task_output")
