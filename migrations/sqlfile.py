"""Run a migration's .sql file as exact SQL on the migration's own connection and transaction."""

from __future__ import annotations

from pathlib import Path

from alembic import op


def run_sql_file(path: Path) -> None:
    # Straight to the driver: SQLAlchemy's text() would read `%` and `:name` in plpgsql bodies as parameters.
    driver_connection = op.get_bind().connection.driver_connection
    driver_connection.execute(path.read_text())  # type: ignore[union-attr]
