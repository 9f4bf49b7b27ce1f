"""The task types an API process knows: those workers published (the task_types table, re-read when a request
names a type not seen yet, and every few seconds), and those defined in this process as a fallback, so an API
process needs neither the application's code nor its dependencies."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from .actors import TASK_TYPES, TaskType
from .store import task_types as store

MAX_AGE_S = 2.0  # a type re-published with a new schema is seen within this
MISS_REFRESH_S = 0.1  # an unknown name re-reads the table at most this often (a client cannot flood it)


class Catalog:
    def __init__(self, local: Mapping[str, TaskType]) -> None:
        self._local = local
        self._published: dict[str, TaskType] = {}
        self._live_workers: dict[str, int] = {}
        self._read_at = float("-inf")
        self.version = 0  # moves whenever what get() answers may have changed

    def get(self, name: str) -> TaskType | None:
        return self._published.get(name) or self._local.get(name)

    def all(self) -> list[TaskType]:
        """This process's types in registration order, then the other published ones by name."""
        names = [*self._local, *sorted(n for n in self._published if n not in self._local)]
        return [t for n in names if (t := self.get(n)) is not None]

    def names(self) -> list[str]:
        return [t.name for t in self.all()]

    def live_workers(self, name: str) -> int | None:
        """Live workers serving `name` as of the last read; None: no worker ever published it."""
        return self._live_workers.get(name)

    def load_rows(self, rows: Iterable[Any]) -> None:
        rows = list(rows)
        published = {r["name"]: store.from_row(r) for r in rows}
        if published != self._published:
            self.version += 1
        self._published = published
        self._live_workers = {r["name"]: int(r["live_workers"]) for r in rows}
        self._read_at = time.monotonic()

    async def refresh(self, conn: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
        rows = await store.list_task_types(conn)
        self.load_rows(rows)
        return rows

    async def ready(self, conn: asyncpg.Pool | asyncpg.Connection, names: Iterable[Any] = ()) -> None:
        """Re-read the table if it is older than MAX_AGE_S, or if a name asked for is unknown."""
        age = time.monotonic() - self._read_at
        unknown = any(isinstance(n, str) and self.get(n) is None for n in names)
        if age > MAX_AGE_S or (unknown and age > MISS_REFRESH_S):
            await self.refresh(conn)


CATALOG = Catalog(TASK_TYPES)
