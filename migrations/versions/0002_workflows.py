"""Workflows: schedules, task dependencies and chains, per-user and per-type limits, creation rate limit,
analytics (docs/workflows.md).

Revision ID: 0002
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(_HERE / "0002_workflows.sql")


def downgrade() -> None:
    run_sql_file(_HERE / "0002_downgrade.sql")
