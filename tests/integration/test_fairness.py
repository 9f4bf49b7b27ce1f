"""Fair claiming across owners: one user's backlog (or their priority 1000) does not hold back another user's
task; priority orders a user's own tasks; the per-user and global limits stay exact."""

from __future__ import annotations

from typing import Any

import psycopg

from bgtasks.worker.claim_policy import CLAIM_BATCH_PER_THREAD
from tests.processes import Processes, wait_until
from tests.rows import one


def queue(sql: psycopg.Connection[Any], user: str, n: int, task_type: str = "noop", **cols: Any) -> list[str]:
    """n tasks of `user` (noop unless told) in one INSERT (as fast as a bulk load gets)."""
    names = ["task_type", "user_id", *cols]
    values = [task_type, user, *cols.values()]
    rows = sql.execute(
        f"INSERT INTO background_tasks ({', '.join(names)}) "
        f"SELECT {', '.join(['%s'] * len(values))} FROM generate_series(1, %s) RETURNING id",
        [*values, n],
    ).fetchall()
    return [r["id"] for r in rows]


def claim(sql: psycopg.Connection[Any], n: int, worker: str = "w1") -> list[dict[str, Any]]:
    return list(
        sql.execute("SELECT id, user_id, priority FROM claim_tasks(%s, %s, 30)", (worker, n)).fetchall()
    )


def test_a_backlog_does_not_hold_back_another_users_task(sql: psycopg.Connection[Any]) -> None:
    queue(sql, "ann", 10_000)
    [bob] = queue(sql, "bob", 1)
    first = claim(sql, 4)
    assert bob in [r["id"] for r in first]
    assert [r["user_id"] for r in first].count("ann") == 3


def test_priority_orders_a_users_own_tasks_not_the_whole_queue(sql: psycopg.Connection[Any]) -> None:
    queue(sql, "ann", 50)
    [bob] = queue(sql, "bob", 1)
    [urgent] = queue(sql, "ann", 1, priority=1000)  # ann's own urgent task, queued last
    # One task per claim, as a worker with one free thread claims. Each owner's first turn is one task: bob's
    # (older than ann's urgent one) and then ann's urgent one, before her 50 older tasks; her priority
    # never put it ahead of bob's.
    order = [claim(sql, 1)[0]["id"] for _ in range(3)]
    assert order[:2] == [bob, urgent]
    assert order[2] not in (bob, urgent)


def test_owners_with_equal_work_take_turns(sql: psycopg.Connection[Any]) -> None:
    for user in ("ann", "bob", "cy"):
        queue(sql, user, 100)
    got = claim(sql, 9)
    assert sorted(r["user_id"] for r in got) == ["ann"] * 3 + ["bob"] * 3 + ["cy"] * 3
    # The next claim favours nobody: they all have three running.
    again = claim(sql, 6, "w2")
    assert sorted(r["user_id"] for r in again) == ["ann"] * 2 + ["bob"] * 2 + ["cy"] * 2


def test_fair_claim_keeps_the_per_user_and_global_limits(sql: psycopg.Connection[Any]) -> None:
    sql.execute("INSERT INTO user_limits (user_id, max_running) VALUES ('ann', 2)")
    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = 5")
    queue(sql, "ann", 100)
    queue(sql, "bob", 100)
    got = claim(sql, 10)
    assert [r["user_id"] for r in got].count("ann") == 2
    assert len(got) == 5
    assert claim(sql, 10) == []
    sql.execute("UPDATE task_queue_settings SET max_concurrent_tasks = NULL")
    more = claim(sql, 10)
    assert [r["user_id"] for r in more] == ["bob"] * 10


def test_a_type_at_its_limit_leaves_no_slot_of_the_claim_empty(sql: psycopg.Connection[Any]) -> None:
    # The top of the queue is one type limited to 3; the claim for 4 slots takes 3 of it and fills the 4th
    # with another type at once (0008 locked 4 of the limited type, kept 3 and left the 4th slot empty).
    sql.execute("INSERT INTO task_type_limits (task_type, max_running) VALUES ('sleep', 3)")
    sleeps = set(queue(sql, "ann", 15, task_type="sleep", priority=5))
    noops = set(queue(sql, "ann", 20))
    got = [r["id"] for r in claim(sql, 4)]
    assert len(got) == 4
    assert len(sleeps & set(got)) == 3 and len(noops & set(got)) == 1
    # The next claimer finds the type full and takes only the other type; the limit holds.
    again = [r["id"] for r in claim(sql, 4, "w2")]
    assert len(again) == 4 and noops.issuperset(again)
    assert one(sql, "SELECT count(*) AS n FROM background_tasks WHERE status = 'processing' "
                    "AND task_type = 'sleep'")["n"] == 3


def test_other_claimers_skip_what_one_holds(sql: psycopg.Connection[Any], database_url: str) -> None:
    ids = set(queue(sql, "ann", 30))
    with psycopg.connect(database_url) as holder:  # a claim in flight: its transaction is still open
        held = {r[0] for r in holder.execute("SELECT id FROM claim_tasks('w1', 10, 30)").fetchall()}
        other = {r["id"] for r in claim(sql, 10, "w2")}
        assert len(held) == 10 and len(other) == 10 and not held & other
    assert held | other <= ids


def test_a_user_queueing_behind_a_10000_task_backlog_starts_within_one_claim_batch(
    sql: psycopg.Connection[Any], procs: Processes
) -> None:
    concurrency = 4
    queue(sql, "ann", 10_000)
    procs.worker(concurrency=concurrency)
    wait_until(lambda: done(sql, "ann") >= 500, 60, "ann's backlog to be draining")
    [bob] = queue(sql, "bob", 1)
    wait_until(lambda: done(sql, "bob") == 1, 30, "bob's task to complete")
    row = one(sql,
        "SELECT count(*) FILTER (WHERE a.started_at > b.created_at AND a.started_at < b.started_at) AS before_bob,"
        " count(*) FILTER (WHERE a.status = 'pending') AS still_queued "
        "FROM background_tasks a, background_tasks b WHERE a.user_id = 'ann' AND b.id = %s",
        (bob,),
    )
    # Claims that had begun before bob's task was committed could not see it: at most one batch of ann's.
    assert row["before_bob"] <= CLAIM_BATCH_PER_THREAD * concurrency, row
    assert row["still_queued"] > 0, "ann's backlog drained before bob's task was queued: the test saw nothing"


def done(sql: psycopg.Connection[Any], user: str) -> int:
    return int(
        one(sql,
            "SELECT count(*) AS n FROM background_tasks WHERE user_id = %s AND status = 'completed'", (user,)
        )["n"]
    )
