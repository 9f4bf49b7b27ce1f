"""bgtasks: long AI jobs in the background, tracked in PostgreSQL, watched live over SSE."""

__version__ = "0.1.0"
