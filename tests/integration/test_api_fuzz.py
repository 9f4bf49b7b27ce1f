"""Schema-driven fuzzing (schemathesis) over /openapi.json against the real app on a test database: no 5xx,
every status code documented, every response matching its schema. Bounded: a few dozen examples per operation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bgtasks.api.app import create_app
from bgtasks.settings import load_settings
from bgtasks.store.keys import hash_key

KEY = "bgt_fuzz_superuser_key_0123456789abcdef"
USER_KEY = "bgt_fuzz_user_key_0123456789abcdef0000"
EXAMPLES = 25  # per operation: about a minute for the whole API
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def api_schema(database_url: str, sql: psycopg.Connection[Any], tmp_path: Path):
    for key, superuser in ((KEY, True), (USER_KEY, False)):
        sql.execute("INSERT INTO api_keys (user_id, key_prefix, key_hash, is_superuser) VALUES (%s, %s, %s, %s)",
                    ("root" if superuser else "alice", key[:12], hash_key(key), superuser))
    # A few tasks in every state, so reads, cancels and retries meet real rows.
    sql.execute("""
        INSERT INTO background_tasks (id, task_type, user_id, status, label)
        SELECT 'task_' || s, 'noop', CASE WHEN s % 2 = 0 THEN 'root' ELSE 'alice' END, 'pending', 'l' || s
        FROM generate_series(0, 9) s""")
    sql.execute("UPDATE background_tasks SET status = 'cancelled' WHERE id IN ('task_1', 'task_2')")
    (tmp_path / "proj").mkdir()
    app = create_app(load_settings(database_url=database_url, bgtasks_dev=False,
                                   bgtasks_project_roots=str(tmp_path), bgtasks_max_body_bytes=64_000))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _is_stream(operation: dict[str, Any]) -> bool:
    """An event stream or the WebSocket: schemathesis would wait for the end of a response that has none."""
    return "x-websocket" in operation or any(
        "text/event-stream" in r.get("content", {}) for r in operation["responses"].values())


@pytest.mark.slow
def test_api_never_breaks_its_schema(api_schema: Any) -> None:
    """Every operation, positive and negative examples; failures are collected so one run shows them all."""
    failures: list[str] = []
    calls: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if _is_stream(operation.definition.raw):
            continue  # never ends; tests/integration/test_sse.py and tests/unit/test_openapi_streams.py
        key = USER_KEY if operation.path.startswith("/api/queue") and operation.method == "get" else KEY

        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            calls.append(case.operation.label)
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)  # noqa: B023

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)
    assert len(set(calls)) >= 20 and len(calls) >= 20 * 10, (len(set(calls)), len(calls))
