"""Listing at scale: search (q=) and every documented sort give the same rows as a plain scan would, LIKE
wildcards stay plain characters, and each is served by an index (so its cost does not grow with the table)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bgtasks import queries
from bgtasks.store import tasks as store

# Labels a search must treat literally: LIKE's wildcards, its escape character, mixed case.
ODD_LABELS = ["noop 100%_done", "a_b", "a%b", "back\\slash", "MiXeD Case", "under__score"]


@pytest.fixture
async def conn(database_url: str) -> Any:
    c = await asyncpg.connect(database_url)
    await c.execute("""
        INSERT INTO background_tasks (task_type, user_id, priority, label, description, created_at)
        SELECT 'noop', 'u' || (i % 3), (i * 7) % 13 - 6, 'task ' || i,
               CASE WHEN i % 5 = 0 THEN 'about ' || (i % 17) || ' things' END,
               now() - (i % 50) * interval '1 minute'
        FROM generate_series(1, 3000) i""")
    await c.execute("""INSERT INTO background_tasks (task_type, user_id, label, description)
                       SELECT 'noop', 'u1', l, 'odd one' FROM unnest($1::text[]) l""", ODD_LABELS)
    # Spread updated_at apart from created_at, as a psql session would.
    await c.execute("UPDATE background_tasks SET updated_at = now() - (priority + 7) * interval '1 hour' "
                    "WHERE id IN (SELECT id FROM background_tasks ORDER BY id LIMIT 1000)")
    await c.execute("VACUUM ANALYZE background_tasks")  # GIN's pending list merged, as autovacuum does
    try:
        yield c
    finally:
        await c.close()


async def _all_pages(conn: asyncpg.Connection, flt: store.TaskFilter, sort: str) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        page = await store.list_tasks(conn, flt, sort=sort, after=after, limit=700)
        seen += [r["id"] for r in page]
        if len(page) < 700:
            return seen
        after = store.cursor_key(page[-1], sort)


async def test_search_finds_exactly_the_substring_matches(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("SELECT id, label, description FROM background_tasks")
    for text in ["100%_", "%", "_", "__", "\\", "a%b", "mixed case", "TASK 12", "about 3 ", "odd", "no such thing"]:
        needle = text.lower()
        expected = sorted(r["id"] for r in rows
                          if needle in (r["label"] or "").lower() or needle in (r["description"] or "").lower())
        found = await _all_pages(conn, store.TaskFilter(search=text), "-createdAt")
        assert sorted(found) == expected, text
        assert expected or text == "no such thing", text


async def test_every_sort_pages_in_order(conn: asyncpg.Connection) -> None:
    for sort, (_, column) in store.SORTS.items():
        for user in (None, "u1"):
            rows = await conn.fetch(
                f"SELECT id, {column} AS k FROM background_tasks WHERE $1::text IS NULL OR user_id = $1", user)
            expected = [r["id"] for r in sorted(rows, key=lambda r: (r["k"], r["id"]), reverse=sort.startswith("-"))]
            assert await _all_pages(conn, store.TaskFilter(user_id=user), sort) == expected, (sort, user)


def _plan_names(plan: list[asyncpg.Record]) -> str:
    return "\n".join(r[0] for r in plan)


async def test_every_sort_is_served_by_an_index(conn: asyncpg.Connection) -> None:
    """Sorting disabled: a plan that still sorts has no index in that order (its cost would grow with the table)."""
    await conn.execute("SET enable_sort = off")
    for sort, (query, column) in store.SORTS.items():
        for user in (None, "u1"):
            flt = store.TaskFilter(user_id=user)
            first = (await store.list_tasks(conn, flt, sort=sort, limit=1))[0]
            for after in ((None, None), (first[column], first["id"])):
                plan = _plan_names(await conn.fetch("EXPLAIN " + queries.get(query).sql, *flt.params(), *after, 100,
                                                    None))
                assert "Sort" not in plan and "Index" in plan, (sort, user, plan)


async def test_search_is_served_by_the_trigram_index(conn: asyncpg.Connection) -> None:
    await conn.execute("SET enable_seqscan = off")
    flt = store.TaskFilter(search="task 1234")
    plan = _plan_names(await conn.fetch("EXPLAIN " + queries.get("list_tasks_created_desc").sql, *flt.params(),
                                        None, None, 100, None))
    assert "background_tasks_label_search_idx" in plan and "background_tasks_description_search_idx" in plan, plan


async def test_a_filter_on_the_live_queue_reads_only_unfinished_rows(conn: asyncpg.Connection) -> None:
    """The history grows, the queue does not: pending/processing in any sort never walks the finished rows."""
    await conn.execute("UPDATE background_tasks SET status = 'completed' WHERE label NOT LIKE 'task 1_'")
    await conn.execute("VACUUM ANALYZE background_tasks")
    flt = store.TaskFilter(statuses=["pending", "processing"])
    expected = await conn.fetch("SELECT id, priority FROM background_tasks WHERE status IN ('pending', 'processing')")
    assert 10 <= len(expected) < 50
    for sort, (query, _) in store.SORTS.items():
        plan = _plan_names(await conn.fetch("EXPLAIN " + queries.get(query).sql, *flt.params(), None, None, 20, None))
        assert "background_tasks_unfinished_idx" in plan, (sort, plan)
    page = await _all_pages(conn, flt, "-priority")
    assert page == [r["id"] for r in sorted(expected, key=lambda r: (r["priority"], r["id"]), reverse=True)]
