"""Alembic migrations of the bgtasks schema (exact SQL, one file per change)."""
