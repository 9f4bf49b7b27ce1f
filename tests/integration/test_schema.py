"""The migrated schema: migrations up and down, queries agree with it, states agree with SQL, every table
and column explained, and the NOTIFY trigger as seen from a psql-like session."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from bgtasks import db, queries
from bgtasks.states import TRANSITIONS, Status
from tests import schema_snapshot
from tests.rows import one

ROOT = Path(__file__).resolve().parents[2]


def test_upgrade_head_makes_the_snapshot_and_every_downgrade_the_schema_before_it(empty_database_url: str) -> None:
    """migrations/schema.sql is what `upgrade head` makes; each migration's downgrade returns exactly the schema
    of the revision before it (compared as pg_dump prints them), down to an empty database and up again."""
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = db.alembic_config(empty_database_url)
    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(cfg).walk_revisions()))]
    schemas = [schema_snapshot.dump(empty_database_url)]  # schemas[i]: after the first i migrations
    for rev in revisions:
        command.upgrade(cfg, rev)
        schemas.append(schema_snapshot.dump(empty_database_url))
    assert schemas[-1] == schema_snapshot.committed(), (
        "upgrade head differs from migrations/schema.sql: run `python -m tests.schema_snapshot URL` on an empty "
        "database and commit the snapshot with the migration\n" + _diff(schema_snapshot.committed(), schemas[-1]))
    for i in range(len(revisions), 0, -1):
        command.downgrade(cfg, "-1")
        # A downgrade keeps the extensions a migration created (0014's pg_trgm: other objects may use them).
        after = _without_extensions(schema_snapshot.dump(empty_database_url))
        assert after == _without_extensions(schemas[i - 1]), (f"the downgrade of {revisions[i - 1]} does not return the schema of "
                                         f"{revisions[i - 2] if i > 1 else 'an empty database'}\n"
                                         + _diff(_without_extensions(schemas[i - 1]), after))
    command.upgrade(cfg, "head")
    assert db.current_revision(empty_database_url) == db.head_revision()
    assert schema_snapshot.dump(empty_database_url) == schemas[-1]


def _without_extensions(schema: str) -> str:
    kept = [b for b in schema.strip().split("\n\n") if not b.startswith(("CREATE EXTENSION", "COMMENT ON EXTENSION"))]
    return "\n\n".join(kept).strip() + "\n"


def _diff(expected: str, got: str) -> str:
    lines = difflib.unified_diff(expected.splitlines(), got.splitlines(), "expected", "got", lineterm="", n=2)
    return "\n".join(list(lines)[:80])


def test_migrate_check_reports_a_database_behind(empty_database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGTASKS_")}
    env["DATABASE_URL"] = empty_database_url
    check = subprocess.run([sys.executable, "-m", "bgtasks.cli", "migrate", "--check"], env=env,
                           capture_output=True, text=True)
    assert check.returncode == 1 and "bgtasks migrate" in check.stderr
    assert subprocess.run([sys.executable, "-m", "bgtasks.cli", "migrate"], env=env).returncode == 0
    again = subprocess.run([sys.executable, "-m", "bgtasks.cli", "migrate", "--check"], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


def test_api_refuses_to_start_on_an_old_schema(empty_database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGTASKS_")}
    env["DATABASE_URL"] = empty_database_url
    run = subprocess.run([sys.executable, "-m", "bgtasks.cli", "api", "--port", "1"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "run `bgtasks migrate`" in run.stderr


async def test_every_named_query_compiles_against_the_migrated_schema(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for query in queries.load().values():
            try:
                await conn.prepare(query.sql)
            except asyncpg.PostgresError as exc:  # pragma: no cover - the message is the point
                pytest.fail(f"query {query.name!r} does not fit the schema: {exc}")
            assert query.description, f"query {query.name!r} has no description line"
    finally:
        await conn.close()


def test_python_statuses_and_transitions_agree_with_sql(sql: psycopg.Connection[Any]) -> None:
    labels = [r["enumlabel"] for r in sql.execute(
        "SELECT enumlabel FROM pg_enum WHERE enumtypid = 'task_status'::regtype ORDER BY enumsortorder")]
    assert labels == [s.value for s in Status]
    for a in Status:
        for b in Status:
            allowed = one(sql, "SELECT task_transition_allowed(%s, %s) AS ok", (a.value, b.value))
            assert allowed["ok"] == (a == b or (a, b) in TRANSITIONS), (a, b)


def test_every_table_column_and_view_has_a_comment(sql: psycopg.Connection[Any]) -> None:
    missing = sql.execute(
        """
        SELECT c.relname || coalesce('.' || a.attname, '') AS name
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                AND c.relkind = 'r'  -- views: the view's own comment is enough
        WHERE c.relkind IN ('r', 'v') AND c.relname <> 'bgtasks_schema_version'
          AND col_description(c.oid, coalesce(a.attnum, 0)) IS NULL
          AND (a.attname IS NOT NULL OR obj_description(c.oid, 'pg_class') IS NULL)
        ORDER BY 1
        """).fetchall()
    assert [m["name"] for m in missing] == []


def test_a_psql_update_notifies_listeners_with_a_small_payload(database_url: str,
                                                              sql: psycopg.Connection[Any]) -> None:
    huge = {"text": "x" * 200_000}
    task_id = one(sql,
        "INSERT INTO background_tasks (task_type, user_id, description, result_data) "
        "VALUES ('docs', 'u', %s, %s) RETURNING id", ("d" * 5000, json.dumps(huge)))["id"]
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN bgtasks_tasks")
        sql.execute(f"UPDATE background_tasks SET status = 'cancelled' WHERE id = '{task_id}'")
        notes = list(listener.notifies(timeout=2, stop_after=1))
    assert notes, "no NOTIFY reached the listener"
    assert len(notes[0].payload.encode()) < 8000
    assert json.loads(notes[0].payload) == [{"id": task_id, "status": "cancelled", "seq": json.loads(
        notes[0].payload)[0]["seq"]}]


def test_a_batch_of_ten_thousand_makes_few_notifications_each_under_the_limit(
        database_url: str, sql: psycopg.Connection[Any]) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN bgtasks_tasks")
        sql.execute("INSERT INTO background_tasks (task_type, user_id) "
                    "SELECT 'noop', 'u' FROM generate_series(1, 10000)")
        notes = list(listener.notifies(timeout=1))
    ids = [e["id"] for n in notes for e in json.loads(n.payload)]
    assert len(ids) == 10000 and len(set(ids)) == 10000
    assert len(notes) < 200 and max(len(n.payload.encode()) for n in notes) < 8000


def test_heartbeats_do_not_notify_or_move_the_change_sequence(database_url: str,
                                                              sql: psycopg.Connection[Any]) -> None:
    sql.execute("INSERT INTO background_tasks (task_type, user_id) VALUES ('noop', 'u')")
    [claimed] = sql.execute("SELECT * FROM claim_tasks('w1', 1, 30)").fetchall()
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN bgtasks_tasks")
        sql.execute("SELECT extend_leases('w1', ARRAY[%s], 60)", (claimed["id"],))
        assert list(listener.notifies(timeout=0.5)) == []
    row = one(sql, "SELECT change_seq, updated_at FROM background_tasks")
    assert row["change_seq"] == claimed["change_seq"] and row["updated_at"] == claimed["updated_at"]


def test_illegal_moves_are_refused_in_sql_whoever_makes_them(sql: psycopg.Connection[Any]) -> None:
    sql.execute("INSERT INTO background_tasks (id, task_type, user_id) VALUES ('t1', 'noop', 'u')")
    sql.execute("UPDATE background_tasks SET status = 'completed' WHERE id = 't1'")
    with pytest.raises(psycopg.Error) as err:
        sql.execute("UPDATE background_tasks SET status = 'processing' WHERE id = 't1'")
    assert err.value.sqlstate == "BG409" and "completed" in str(err.value)
    with pytest.raises(psycopg.Error) as err:
        sql.execute("SELECT cancel_task('t1')")
    assert err.value.sqlstate == "BG409"
    with pytest.raises(psycopg.Error) as err:
        sql.execute("SELECT cancel_task('nope')")
    assert err.value.sqlstate == "BG404"


def test_counts_follow_every_change_without_scanning(sql: psycopg.Connection[Any]) -> None:
    sql.execute("INSERT INTO background_tasks (task_type, user_id) SELECT 'noop', 'u' FROM generate_series(1, 5)")
    sql.execute("SELECT * FROM claim_tasks('w', 2, 30)")
    sql.execute("UPDATE background_tasks SET status = 'cancelled' WHERE status = 'pending'")
    sql.execute("DELETE FROM background_tasks WHERE status = 'cancelled'")
    counts = {r["status"]: int(r["n"]) for r in sql.execute(
        "SELECT status::text, sum(n) AS n FROM task_counts GROUP BY 1 HAVING sum(n) <> 0")}
    assert counts == {"processing": 2}


def test_the_claim_condition_is_written_once_and_is_the_predicate_of_its_index(sql: psycopg.Connection[Any]) -> None:
    """claimable_tasks holds the claim condition; the partial index that serves it has the same predicate, and
    the current schema (the snapshot) writes the condition nowhere else."""
    view = one(sql, "SELECT pg_get_viewdef('claimable_tasks'::regclass) AS d")["d"]
    index = one(sql, "SELECT pg_get_expr(indpred, indrelid) AS p FROM pg_index "
                     "WHERE indexrelid = 'background_tasks_claimable_idx'::regclass")["p"]
    where = view[view.index("WHERE") + len("WHERE"):].strip().rstrip(";").replace("t.", "")
    assert where == index
    snapshot = schema_snapshot.committed()
    assert snapshot.count("waiting_for = 0") == 2  # the view and its index
    for function in ("lock_tasks_to_claim", "claim_tasks", "complete_and_claim"):
        body = snapshot[snapshot.index(f"CREATE FUNCTION public.{function}("):]
        body = body[:body.index("\n$$;")]
        assert "waiting_for" not in body, function
    assert "claimable_tasks c" in snapshot[snapshot.index("CREATE FUNCTION public.lock_tasks_to_claim("):]
