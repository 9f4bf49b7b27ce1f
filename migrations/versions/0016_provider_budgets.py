"""Provider budgets shared by the fleet: provider_budgets (requests and tokens per minute per provider and model),
reservations counted in SQL before each model call and settled after it, tasks that wait for a budget put back
in the queue (postpone_for_budget(), outcome budget_wait, waiting reason provider_budget).

Revision ID: 0016
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0016"
down_revision = "0019"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0016_provider_budgets.sql")


def downgrade() -> None:
    # task_waiting_reason() and the comments this migration changed, as 0011 and 0012 wrote them, taken from
    # their own files rather than copied here.
    run = op.get_bind().connection.driver_connection.execute  # type: ignore[union-attr]
    for source, pattern in (
        ("0012_waiting_reasons.sql", r"CREATE FUNCTION task_waiting_reason\(.*?\n\$\$;"),
        ("0012_waiting_reasons.sql", r"COMMENT ON FUNCTION task_waiting_reason\(background_tasks\) IS\s*'.*?';\n"),
        ("0011_provider_rate_limits.sql", r"COMMENT ON COLUMN task_attempt_errors\.outcome IS\s*'.*?';\n"),
    ):
        found = re.search(pattern, (HERE / source).read_text(), re.S)
        assert found is not None, f"{source} no longer has {pattern}"
        run(found.group(0).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute("DROP VIEW provider_budget_usage")
    op.execute("DROP FUNCTION postpone_for_budget(text, integer, text, text, double precision, text)")
    op.execute("DROP FUNCTION settle_provider_budget(bigint, integer, boolean, double precision, integer, "
               "double precision, bigint, double precision, double precision)")
    op.execute("DROP FUNCTION reserve_provider_budget(text, text, text, integer, double precision)")
    op.execute("DROP FUNCTION provider_budget_expected_end(provider_budget_reservations, double precision, "
               "timestamptz)")
    op.execute("DROP FUNCTION provider_budget_factor(provider_budgets, timestamptz)")
    op.execute("DROP TABLE provider_budget_waits")
    op.execute("DROP TABLE provider_budget_reservations")
    op.execute("DROP TABLE provider_budgets")  # and its triggers
    op.execute("DROP FUNCTION provider_budgets_changed()")
    op.execute("DELETE FROM task_attempt_errors WHERE outcome = 'budget_wait'")
    op.execute("ALTER TABLE task_attempt_errors DROP CONSTRAINT task_attempt_errors_outcome_check")
    op.execute(
        "ALTER TABLE task_attempt_errors ADD CONSTRAINT task_attempt_errors_outcome_check "
        "CHECK (outcome IN ('retried', 'failed', 'lease_expired', 'rate_limited'))"
    )
