"""Counters instead of scans: the creation rate limit from per-second counters (task_creation_counts, kept by the
insert trigger) instead of counting the user's tasks of the last minute on every create; GET /metrics's recent
histograms from task_finish_stats (kept by the update trigger) instead of reading the window's finished rows.

Revision ID: 0020
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0020"
down_revision = "0015"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0020_cheap_creation_rate.sql")
    run_sql_file(HERE / "0020_finish_stats.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0020_downgrade.sql")
