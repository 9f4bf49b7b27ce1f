"""Driver errors in the API are 503 with Retry-After and a JSON body naming the problem, never 500: here the
database terminates the API's connections and then refuses new ones (too many connections for its role);
the API answers 503 throughout, logs a line per reason rather than per request, and recovers."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.integration.apiclient import running_api
from tests.processes import wait_until


@pytest.fixture
def role_url(database_url: str, sql: psycopg.Connection[Any]) -> Any:
    """The test database as an ordinary role (superusers ignore connection limits)."""
    role = "bg_" + uuid.uuid4().hex[:10]
    sql.execute(f"CREATE ROLE {role} LOGIN")
    for what in ("ALL TABLES", "ALL SEQUENCES", "ALL FUNCTIONS"):
        sql.execute(f"GRANT ALL ON {what} IN SCHEMA public TO {role}")
    sql.execute(f"GRANT ALL ON SCHEMA public TO {role}")
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    yield role, urlunsplit(parts._replace(netloc=f"{role}@{host}"))
    sql.execute(f"ALTER ROLE {role} CONNECTION LIMIT -1")
    sql.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
    sql.execute(f"DROP OWNED BY {role}")
    wait_until(lambda: not sql.execute("SELECT 1 FROM pg_stat_activity WHERE usename = %s", (role,)).fetchall(),
               10, "the role's connections to end")
    sql.execute(f"DROP ROLE {role}")


async def test_an_unavailable_database_is_503_with_retry_after_never_500(
        role_url: tuple[str, str], sql: psycopg.Connection[Any], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    role, url = role_url
    async with running_api(url, tmp_path, bgtasks_pooler="none") as api:
        auth = await api.key("ann")
        assert (await api.client.get("/api/tasks", headers=auth)).status_code == 200

        # Every connection of the API's role ends, and none may be opened again.
        sql.execute(f"ALTER ROLE {role} CONNECTION LIMIT 0")
        sql.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        caplog.clear()
        answers = []
        with caplog.at_level(logging.WARNING, logger="bgtasks.api"):
            for path in ["/api/tasks", "/api/tasks/counts", "/api/queue"] * 5:
                r = await api.client.get(path, headers=auth)
                answers.append((path, r.status_code, r.headers.get("retry-after"), r.json()))
        for path, status, retry_after, body in answers:
            assert status == 503 and retry_after == "1", (path, status, body)
            assert body["success"] is False and body["code"] == "unavailable", body
            assert body["error"].endswith("; retry shortly"), body
        reasons = {body["error"] for *_, body in answers}
        assert "the database has no free connections; retry shortly" in reasons, reasons
        lines = [r for r in caplog.records if r.name == "bgtasks.api" and "database unavailable" in r.message]
        assert 1 <= len(lines) <= len(reasons) < len(answers), [r.message for r in lines]
        assert not [r for r in caplog.records if r.exc_info], "no tracebacks through an outage"

        sql.execute(f"ALTER ROLE {role} CONNECTION LIMIT -1")

        async def back() -> bool:
            return (await api.client.get("/api/tasks", headers=auth)).status_code == 200

        for _ in range(100):
            if await back():
                break
        else:
            raise AssertionError("the API did not answer 200 again once connections were allowed")
