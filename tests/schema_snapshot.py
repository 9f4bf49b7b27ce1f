"""The schema as pg_dump prints it, normalized so that two databases with the same schema print the same text:
what migrations/schema.sql holds (`upgrade head` on an empty database) and what the drift test compares.

Write the snapshot again after a migration changes the schema:
    .venv/bin/python -m tests.schema_snapshot postgresql://…/an_empty_database
(it upgrades that database to head and writes migrations/schema.sql), then read the diff before committing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bgtasks import db
from bgtasks.embedded import bin_dir

SNAPSHOT = Path(__file__).resolve().parents[1] / "migrations" / "schema.sql"
HEADER = ("-- The schema that `bgtasks migrate` (alembic upgrade head) makes on an empty database, as pg_dump\n"
          "-- --schema-only prints it (normalized: tests/schema_snapshot.py). Read it to find the current definition\n"
          "-- of a function, view or table; tests/integration/test_schema.py fails when a migration and this file\n"
          "-- disagree. Written by `python -m tests.schema_snapshot URL`, never by hand.\n\n")

# pg_dump's session settings, its \restrict lines (a random key per run) and its comments vary from run to run
# or from version to version; the schema does not.
_NOISE = re.compile(r"^(--.*|SET .*|SELECT pg_catalog\.set_config.*|\\(un)?restrict .*)$")


def dump(url: str) -> str:
    """The normalized schema of the database at `url` (the migration version table left out)."""
    run = subprocess.run(
        [str(bin_dir() / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
         f"--exclude-table={db.VERSION_TABLE}", "--dbname", url],
        capture_output=True, text=True, timeout=120,
    )
    if run.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {run.stderr[-2000:]}")
    lines = [ln.rstrip() for ln in run.stdout.splitlines() if not _NOISE.match(ln)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def committed() -> str:
    """The committed snapshot, without its header."""
    return SNAPSHOT.read_text().removeprefix(HEADER)


def main(url: str) -> None:
    db.migrate(url)
    SNAPSHOT.write_text(HEADER + dump(url))
    print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
    main(sys.argv[1])
