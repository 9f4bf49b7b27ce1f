"""The SQL console: each function of migration 0003 at a psql-like autocommit connection does what the API path
does (service/store, the queries the HTTP handlers run): same row, same history, same NOTIFY, same refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bgtasks import db
from bgtasks.errors import IllegalTransition
from bgtasks.store import queue as queue_store
from bgtasks.store import tasks as task_store
from tests.rows import one


class Listener:
    """A second connection LISTENing like the hub and the workers do."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN bgtasks_tasks")
        self.conn.execute("LISTEN bgtasks_queue")

    def drain(self, timeout: float = 0.5) -> list[tuple[str, Any]]:
        out = []
        for note in self.conn.notifies(timeout=timeout, stop_after=None):
            out.append((note.channel, json.loads(note.payload)))
        return out

    def task_events(self, timeout: float = 0.5) -> list[dict[str, Any]]:
        return [e for ch, entries in self.drain(timeout) if ch == "bgtasks_tasks" for e in entries]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def listener(database_url: str) -> Iterator[Listener]:
    lst = Listener(database_url)
    yield lst
    lst.close()


def _enqueue(sql: psycopg.Connection[Any], task_type: str = "noop", user: str = "alice", **kw: Any) -> dict[str, Any]:
    names = ", ".join(f"{k} => %({k})s" for k in kw)
    row = sql.execute(f"SELECT * FROM enqueue_task(%(t)s, %(u)s{', ' + names if names else ''})",
                      {"t": task_type, "u": user, **kw}).fetchone()
    assert row is not None
    return row


def _counts(sql: psycopg.Connection[Any]) -> dict[str, int]:
    return {r["status"]: r["tasks"] for r in sql.execute("SELECT * FROM task_status_counts").fetchall()}


def test_enqueue_task_creates_a_pending_task_and_notifies(sql: psycopg.Connection[Any], listener: Listener) -> None:
    row = _enqueue(sql, "sleep", payload=psycopg.types.json.Jsonb({"seconds": 1}), priority=5, label="nightly")
    assert row["status"] == "pending" and row["priority"] == 5 and row["payload"] == {"seconds": 1}
    assert row["label"] == "nightly" and row["max_retries"] == 3 and row["user_id"] == "alice"
    events = listener.task_events()
    assert [(e["id"], e["status"]) for e in events] == [(row["id"], "pending")]
    assert _counts(sql)["pending"] == 1
    assert sql.execute("SELECT pending FROM task_type_counts WHERE task_type = 'sleep'").fetchone() == {
        "pending": 1}


def test_enqueue_task_with_a_repeated_idempotency_key_returns_the_first(sql: psycopg.Connection[Any]) -> None:
    first = _enqueue(sql, idempotency_key="k1")
    again = _enqueue(sql, idempotency_key="k1")
    other_user = _enqueue(sql, user="bob", idempotency_key="k1")
    assert again["id"] == first["id"] and other_user["id"] != first["id"]
    assert _counts(sql)["pending"] == 2


def test_enqueue_task_refuses_what_the_table_refuses(sql: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        _enqueue(sql, "Not A Type")
    with pytest.raises(psycopg.errors.CheckViolation):
        _enqueue(sql, payload=psycopg.types.json.Jsonb([1, 2]))


async def test_cancel_task_at_psql_matches_the_api_path(sql: psycopg.Connection[Any], pool: Any,
                                                       listener: Listener) -> None:
    at_psql = _enqueue(sql)
    via_api = _enqueue(sql)
    listener.drain(0.2)
    a = sql.execute("SELECT * FROM cancel_task(%s)", (at_psql["id"],)).fetchone()
    psql_events = listener.task_events()
    b = await task_store.cancel_visible_task(pool, via_api["id"], None)
    api_events = listener.task_events()
    assert a is not None and b is not None
    for key in ("status", "cancel_reason", "error_message", "progress", "retry_count", "worker_id"):
        assert a[key] == b[key], key
    assert a["status"] == "cancelled" and a["completed_at"] is not None
    assert [e["status"] for e in psql_events] == [e["status"] for e in api_events] == ["cancelled"]
    assert _counts(sql)["cancelled"] == 2


async def test_cancelling_a_completed_task_is_refused_at_psql_and_at_the_api(sql: psycopg.Connection[Any], pool: Any,
                                                                            listener: Listener) -> None:
    t = _enqueue(sql)
    sql.execute("UPDATE background_tasks SET status = 'completed' WHERE id = %s", (t["id"],))
    listener.drain(0.2)
    with pytest.raises(psycopg.Error) as refused:
        sql.execute("SELECT * FROM cancel_task(%s)", (t["id"],))
    assert refused.value.sqlstate == "BG409"
    assert "only pending or processing tasks can be cancelled" in str(refused.value)
    with pytest.raises(IllegalTransition):
        await task_store.cancel_visible_task(pool, t["id"], None)
    with pytest.raises(psycopg.Error) as missing:
        sql.execute("SELECT * FROM cancel_task('task_nope')")
    assert missing.value.sqlstate == "BG404"
    row = sql.execute("SELECT status::text, cancel_reason FROM background_tasks WHERE id = %s",
                      (t["id"],)).fetchone()
    assert row == {"status": "completed", "cancel_reason": None}
    assert listener.task_events() == []  # a refusal changes nothing, so nobody is told anything


async def test_retry_task_at_psql_keeps_the_history_and_matches_the_api(sql: psycopg.Connection[Any], pool: Any,
                                                                       listener: Listener) -> None:
    ids = [_enqueue(sql, "flaky")["id"] for _ in range(2)]
    claimed = sql.execute("SELECT id, attempt FROM claim_tasks('w1', 2, 30)").fetchall()
    assert {c["id"] for c in claimed} == set(ids)
    for c in claimed:
        sql.execute("SELECT fail_task(%s, %s, 'RuntimeError', 'boom', true)", (c["id"], c["attempt"]))
    listener.drain(0.2)
    a = sql.execute("SELECT * FROM retry_task(%s)", (ids[0],)).fetchone()
    psql_events = listener.task_events()
    b = await task_store.retry_visible_task(pool, ids[1], None)
    api_events = listener.task_events()
    assert a is not None and b is not None
    for key in ("status", "retry_count", "error_message", "progress", "worker_id", "completed_at"):
        assert a[key] == b[key], key
    assert a["status"] == "pending" and a["attempt"] == 1
    assert [e["status"] for e in psql_events] == [e["status"] for e in api_events] == ["pending"]
    history = sql.execute("SELECT task_id, outcome, error_message FROM task_attempt_errors ORDER BY task_id").fetchall()
    assert sorted(h["task_id"] for h in history) == sorted(ids)
    assert {h["outcome"] for h in history} == {"failed"} and {h["error_message"] for h in history} == {"boom"}
    with pytest.raises(psycopg.Error) as refused:  # pending now: nothing to retry
        sql.execute("SELECT * FROM retry_task(%s)", (ids[0],))
    assert refused.value.sqlstate == "BG409"
    with pytest.raises(IllegalTransition):
        await task_store.retry_visible_task(pool, ids[1], None)


async def test_clear_completed_at_psql_matches_the_api(sql: psycopg.Connection[Any], pool: Any,
                                                      listener: Listener) -> None:
    def seed() -> list[str]:
        done = [_enqueue(sql, user=u, project_id=p)["id"] for u, p in
                (("alice", "p1"), ("alice", "p2"), ("bob", "p1"))]
        sql.execute("UPDATE background_tasks SET status = 'completed' WHERE id = ANY(%s)", (done,))
        return done

    first = seed()
    kept = _enqueue(sql, user="alice")  # pending: never cleared
    listener.drain(0.2)
    assert sql.execute("SELECT clear_completed('alice', 'p1') AS n").fetchone() == {"n": 1}
    assert [e["status"] for e in listener.task_events()] == ["deleted"]
    assert sql.execute("SELECT clear_completed('alice') AS n").fetchone() == {"n": 1}
    assert sql.execute("SELECT clear_completed() AS n").fetchone() == {"n": 1}
    left = {r["id"] for r in sql.execute("SELECT id FROM background_tasks").fetchall()}
    assert left == {kept["id"]} and not set(first) & left

    seed()
    assert await task_store.clear_completed_tasks(pool, "alice", "p1") == 1
    assert await task_store.clear_completed_tasks(pool, "alice") == 1
    assert await task_store.clear_completed_tasks(pool, None) == 1
    assert _counts(sql) == {"pending": 1, "processing": 0, "completed": 0, "error": 0, "cancelled": 0}


async def test_pause_resume_and_limit_at_psql_match_the_api(sql: psycopg.Connection[Any], pool: Any,
                                                           listener: Listener) -> None:
    for _ in range(5):
        _enqueue(sql)
    listener.drain(0.2)
    paused = sql.execute("SELECT * FROM pause_queue()").fetchone()
    assert paused is not None and paused["is_active"] is False
    notes = listener.drain()
    assert [(ch, p["is_active"]) for ch, p in notes] == [("bgtasks_queue", False)]
    assert sql.execute("SELECT count(*) AS n FROM claim_tasks('w1', 5, 30)").fetchone() == {"n": 0}
    api_row = await queue_store.update_queue_settings(pool, is_active=False)
    assert api_row["is_active"] is False
    assert listener.drain(0.3) == []  # no change, no notification, either way

    limited = sql.execute("SELECT * FROM set_concurrency_limit(2)").fetchone()
    assert limited is not None and limited["max_concurrent_tasks"] == 2
    assert sql.execute("SELECT is_active FROM resume_queue()").fetchone() == {"is_active": True}
    queue_notes = [p for ch, p in listener.drain() if ch == "bgtasks_queue"]
    assert [(p["is_active"], p["max_concurrent_tasks"]) for p in queue_notes] == [(False, 2), (True, 2)]
    assert sql.execute("SELECT count(*) AS n FROM claim_tasks('w1', 5, 30)").fetchone() == {"n": 2}
    assert sql.execute("SELECT count(*) AS n FROM claim_tasks('w2', 5, 30)").fetchone() == {"n": 0}

    unlimited = sql.execute("SELECT * FROM set_concurrency_limit(NULL)").fetchone()
    assert unlimited is not None and unlimited["max_concurrent_tasks"] is None
    assert sql.execute("SELECT count(*) AS n FROM claim_tasks('w2', 5, 30)").fetchone() == {"n": 3}
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        sql.execute("SELECT set_concurrency_limit(-1)")
    api_row = await queue_store.update_queue_settings(pool, max_concurrent_tasks=2)
    same = sql.execute("SELECT * FROM set_concurrency_limit(2)").fetchone()
    assert same is not None and dict(api_row) == same


def test_views_show_health_stuck_tasks_type_stats_and_usage(sql: psycopg.Connection[Any]) -> None:
    for _ in range(3):
        _enqueue(sql)
    _enqueue(sql, "sleep", run_at=None)
    _enqueue(sql, "flaky", user="bob")
    sql.execute("SELECT * FROM claim_tasks('w1', 2, 30)")
    sql.execute("INSERT INTO bgtasks_workers (worker_id, hostname, pid, concurrency) VALUES ('w1', 'h', 1, 4), "
                "('w0', 'h', 2, 8)")
    sql.execute("UPDATE bgtasks_workers SET heartbeat_at = now() - interval '1 hour' WHERE worker_id = 'w0'")
    # One running task's worker went silent: its lease lapsed.
    stuck_id = one(sql, "UPDATE background_tasks SET lease_expires_at = now() - interval '5 seconds', "
                           "worker_id = 'w0' WHERE id = (SELECT id FROM background_tasks WHERE status = "
                           "'processing' LIMIT 1) RETURNING id")["id"]  # type: ignore[index]

    health = sql.execute("SELECT * FROM queue_health").fetchone()
    assert health is not None
    assert health["is_active"] is True and health["running"] == 2 and health["stuck"] == 1
    assert health["pending_due"] == 3 and health["pending_total"] == 3
    assert health["live_workers"] == 1 and health["live_capacity"] == 4 and health["silent_workers"] == 1
    assert health["oldest_due_waiting"] is not None

    stuck = sql.execute("SELECT * FROM stuck_tasks").fetchall()
    assert [(s["id"], s["worker_id"], s["worker_alive"]) for s in stuck] == [(stuck_id, "w0", False)]
    sql.execute("SET bgtasks.worker_stale_after = '2 hours'")
    assert sql.execute("SELECT live_workers FROM queue_health").fetchone() == {"live_workers": 2}

    # Finished work of the last day: two completed noops (1 s and 3 s), one flaky that failed after a retry.
    sql.execute("""
        INSERT INTO background_tasks (task_type, user_id, status, created_at, started_at, completed_at)
        VALUES ('noop', 'alice', 'completed', now() - interval '10 s', now() - interval '5 s', now() - interval '4 s'),
               ('noop', 'alice', 'completed', now() - interval '10 s', now() - interval '5 s', now() - interval '2 s'),
               ('flaky', 'bob', 'error', now() - interval '10 s', now() - interval '9 s', now() - interval '8 s'),
               ('flaky', 'bob', 'completed', now() - interval '3 days', now() - interval '3 days',
                now() - interval '3 days')""")
    failed = one(sql, "SELECT id FROM background_tasks WHERE status = 'error'")["id"]  # type: ignore[index]
    sql.execute("INSERT INTO task_attempt_errors (task_id, attempt, error_type, error_message, outcome) VALUES "
                "(%s, 1, 'RuntimeError', 'x', 'retried'), (%s, 2, 'RuntimeError', 'x', 'failed')",
                (failed, failed))
    stats = {r["task_type"]: r for r in sql.execute("SELECT * FROM task_type_stats").fetchall()}
    assert list(stats) == ["flaky", "noop"]  # most failing first
    assert stats["flaky"]["failed"] == 1 and stats["flaky"]["completed"] == 0  # the 3-day-old one is out
    assert stats["flaky"]["failure_rate"] == 1 and stats["flaky"]["retried_attempts"] == 1
    assert stats["noop"]["completed"] == 2 and stats["noop"]["failure_rate"] == 0
    assert float(stats["noop"]["avg_seconds"]) == pytest.approx(2.0, abs=0.01)
    assert float(stats["noop"]["max_seconds"]) == pytest.approx(3.0, abs=0.01)
    assert 2.0 < float(stats["noop"]["p95_seconds"]) <= 3.0

    sql.execute("""
        INSERT INTO task_model_calls (task_id, user_id, task_type, attempt, model, prompt_tokens,
                                      completion_tokens, total_tokens, duration_ms, created_at)
        VALUES ('t1', 'alice', 'docs', 1, 'm', 100, 20, 120, 800, now()),
               ('t1', 'alice', 'docs', 1, 'm', 50, 10, 60, 400, now() - interval '2 days'),
               ('t2', 'bob', 'generation', 1, 'm', 10, 5, 15, 100, now())""")
    usage = {r["user_id"]: r for r in sql.execute("SELECT * FROM usage_by_user").fetchall()}
    assert list(usage) == ["alice", "bob"]
    assert usage["alice"]["tasks"] == 1 and usage["alice"]["model_calls"] == 2
    assert usage["alice"]["total_tokens"] == 180 and usage["alice"]["total_tokens_24h"] == 120
    assert usage["bob"]["prompt_tokens"] == 10 and usage["bob"]["completion_tokens"] == 5

    counts = {r["task_type"]: r for r in sql.execute("SELECT * FROM task_type_counts").fetchall()}
    assert counts["noop"]["completed"] == 2 and counts["flaky"]["error"] == 1
    assert sum(r["total"] for r in counts.values()) == sum(_counts(sql).values()) == 9


def test_purge_finished_tasks_deletes_old_finished_rows_in_batches(sql: psycopg.Connection[Any],
                                                                   listener: Listener) -> None:
    sql.execute("""
        INSERT INTO background_tasks (task_type, user_id, status, completed_at)
        SELECT 'noop', 'u' || (i % 3), (ARRAY['completed', 'error', 'cancelled'])[1 + i % 3]::task_status,
               now() - interval '10 days' - make_interval(mins => i)
        FROM generate_series(1, 250) i""")
    recent = _enqueue(sql)
    sql.execute("UPDATE background_tasks SET status = 'completed' WHERE id = %s", (recent["id"],))
    pending_old = sql.execute("INSERT INTO background_tasks (task_type, user_id, created_at) VALUES "
                              "('noop', 'u', now() - interval '30 days') RETURNING id").fetchone()
    listener.drain(0.2)
    oldest = sql.execute("SELECT id FROM background_tasks WHERE status <> 'pending' "
                         "ORDER BY completed_at LIMIT 100").fetchall()
    assert sql.execute("SELECT purge_finished_tasks('7 days', 100) AS n").fetchone() == {"n": 100}
    gone = {r["id"] for r in oldest}
    assert not sql.execute("SELECT 1 FROM background_tasks WHERE id = ANY(%s)", (list(gone),)).fetchall()
    events = listener.task_events()
    assert {e["id"] for e in events} == gone and {e["status"] for e in events} == {"deleted"}
    assert sql.execute("SELECT purge_finished_tasks('7 days', 100) AS n").fetchone() == {"n": 100}
    assert sql.execute("SELECT purge_finished_tasks('7 days', 100) AS n").fetchone() == {"n": 50}
    assert sql.execute("SELECT purge_finished_tasks('7 days', 100) AS n").fetchone() == {"n": 0}
    left = {r["id"] for r in sql.execute("SELECT id FROM background_tasks").fetchall()}
    assert left == {recent["id"], pending_old["id"]}  # type: ignore[index]
    assert _counts(sql) == {"pending": 1, "processing": 0, "completed": 1, "error": 0, "cancelled": 0}


def test_purge_skips_rows_another_transaction_holds(database_url: str, sql: psycopg.Connection[Any]) -> None:
    sql.execute("INSERT INTO background_tasks (task_type, user_id, status, completed_at) "
                "SELECT 'noop', 'u', 'error', now() - interval '10 days' FROM generate_series(1, 3)")
    held = one(sql, "SELECT id FROM background_tasks LIMIT 1")["id"]  # type: ignore[index]
    with db.sync_connect(database_url) as other:
        with other.transaction():
            other.execute("SELECT 1 FROM background_tasks WHERE id = %s FOR UPDATE", (held,))
            sql.execute("SET lock_timeout = '2s'")  # would fail the test rather than hang if purge waited
            assert sql.execute("SELECT purge_finished_tasks('1 day', 10) AS n").fetchone() == {"n": 2}
    assert sql.execute("SELECT purge_finished_tasks('1 day', 10) AS n").fetchone() == {"n": 1}


def test_downgrade_drops_the_operations_objects_and_upgrade_restores_them(empty_database_url: str) -> None:
    from alembic import command

    def present(conn: psycopg.Connection[Any]) -> set[str]:
        rows = conn.execute("""
            SELECT viewname AS name FROM pg_views WHERE schemaname = 'public'
            UNION ALL SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public' AND proname IN ('enqueue_task', 'clear_completed', 'pause_queue',
                'resume_queue', 'set_concurrency_limit', 'purge_finished_tasks', 'worker_stale_after')
            UNION ALL SELECT indexname FROM pg_indexes WHERE indexname = 'task_attempt_errors_failed_idx'
        """).fetchall()
        return {r["name"] for r in rows}

    ours = {"task_status_counts", "task_type_counts", "queue_health", "stuck_tasks", "task_type_stats",
            "usage_by_user", "enqueue_task", "clear_completed", "pause_queue", "resume_queue",
            "set_concurrency_limit", "purge_finished_tasks", "worker_stale_after", "task_attempt_errors_failed_idx"}
    db.migrate(empty_database_url)
    with db.sync_connect(empty_database_url) as conn:
        assert ours <= present(conn)
    command.downgrade(db.alembic_config(empty_database_url), "0002")
    with db.sync_connect(empty_database_url) as conn:
        assert not ours & present(conn)
        assert conn.execute("SELECT count(*) AS n FROM background_tasks").fetchone() == {"n": 0}
    db.migrate(empty_database_url)
    with db.sync_connect(empty_database_url) as conn:
        assert ours <= present(conn)
