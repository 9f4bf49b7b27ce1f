"""Outage grace: no lease is reaped within a grace period of a server start or of an outage seen by the
workers' heartbeats (lease_reaper, worker_heartbeat(), reap_expired_leases(max_tasks, grace_seconds)).

Revision ID: 0009
"""

from __future__ import annotations

from pathlib import Path

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0009_outage_grace.sql")


def downgrade() -> None:
    run_sql_file(HERE / "0009_downgrade.sql")
