"""Stream credentials: NOTIFY bgtasks_keys when a key is revoked, changed or deleted; service_secrets (the read
token signing secret); user_limits.max_streams.

Revision ID: 0007
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

from bgtasks.migrations.sqlfile import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

HERE = Path(__file__).parent


def upgrade() -> None:
    run_sql_file(HERE / "0007_stream_credentials.sql")


def downgrade() -> None:
    op.execute("ALTER TABLE user_limits DROP COLUMN max_streams")
    op.execute("DROP TABLE service_secrets")
    op.execute("DROP TRIGGER api_keys_notify_delete ON api_keys")
    op.execute("DROP TRIGGER api_keys_notify_change ON api_keys")
    op.execute("DROP FUNCTION notify_api_key_change()")
