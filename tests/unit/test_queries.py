"""Named queries and their fragments: a fragment is written once and placed where a query names it."""

from __future__ import annotations

from importlib import resources

import pytest

from bgtasks import queries
from bgtasks.store.tasks import SORTS


def test_a_fragment_is_placed_into_each_query_that_names_it_across_files() -> None:
    first = "-- fragment: mine\n-- Rows of $1.\nuser_id = $1\n\n-- name: a\n-- One.\nSELECT 1 FROM t WHERE {{mine}};\n"
    second = "-- name: b\n-- Two.\nDELETE FROM t WHERE {{mine}} AND id = $2;\n"
    parsed = queries.parse(first, second)
    assert set(parsed) == {"a", "b"}  # a fragment is no query
    assert parsed["a"].sql == "SELECT 1 FROM t WHERE user_id = $1"
    assert parsed["b"].sql == "DELETE FROM t WHERE user_id = $1 AND id = $2"
    assert parsed["b"].psycopg_sql == "DELETE FROM t WHERE user_id = %(p1)s AND id = %(p2)s"


def test_an_unknown_or_repeated_fragment_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="unknown fragment 'nope'"):
        queries.parse("-- name: a\n-- One.\nSELECT {{nope}};\n")
    with pytest.raises(ValueError, match="fragment 'f' is defined twice"):
        queries.parse("-- fragment: f\n-- F.\n1\n", "-- fragment: f\n-- F.\n2\n")


def test_the_list_filter_is_written_once_and_used_by_every_list_bulk_and_totals_query() -> None:
    text = (resources.files("bgtasks.sql") / "tasks.sql").read_text()
    assert text.count("t.label ILIKE $7") == 1
    users = [q.name for q in queries.load().values() if "t.label ILIKE $7 OR t.description ILIKE $7" in q.sql]
    bulk = ["cancel_tasks_matching", "retry_tasks_matching", "delete_tasks_matching"]
    totals = ["count_tasks_matching"]  # the list's counts under a search (api/tasks.py totals_for)
    assert sorted(users) == sorted([query for query, _ in SORTS.values()] + bulk + totals)
