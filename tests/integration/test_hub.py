"""The hub against a real PostgreSQL: routing by owner and filter, coalescing and dropping slow subscribers,
deletes and queue events, and no terminal event lost when its LISTEN connection is killed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from bgtasks.hub import Hub, Subscriber, TaskFilter


@pytest.fixture
async def hub(database_url: str, pool: object) -> AsyncIterator[Hub]:
    h = Hub(database_url, pool, buffer=500, backoff_base=0.05, backoff_max=0.5)
    await h.start()
    await h.wait_until(lambda: h.connected, 10, "first LISTEN connection")
    try:
        yield h
    finally:
        await h.stop()


def insert(
    sql: psycopg.Connection[Any], n: int, user: str = "alice", task_type: str = "noop", project: str | None = None
) -> list[str]:
    rows = sql.execute(
        "INSERT INTO background_tasks (task_type, user_id, project_id) "
        "SELECT %s, %s, %s FROM generate_series(1, %s) RETURNING id",
        (task_type, user, project, n),
    ).fetchall()
    return [r["id"] for r in rows]


async def collect(sub: Subscriber, until: int, within_s: float = 10.0) -> list[Any]:
    """Events from `sub` until `until` have arrived (fails with a sentence after within_s)."""
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while len(got) < until:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"expected {until} events within {within_s}s, got {len(got)}: {got}")
        got.extend(await sub.next_batch(remaining))
    return got


async def test_change_reaches_owner_and_superuser_but_not_another_user(
    hub: Hub, sql: psycopg.Connection[Any]
) -> None:
    alice, bob, admin = (
        hub.subscribe(TaskFilter(user_id="alice")),
        hub.subscribe(TaskFilter(user_id="bob")),
        hub.subscribe(TaskFilter()),
    )
    [tid] = insert(sql, 1, "alice")
    [ev] = await collect(alice, 1)
    assert ev.kind == "task" and ev.row["id"] == tid and ev.row["status"] == "pending"
    [ev2] = await collect(admin, 1)
    assert ev2 is ev  # one Event object shared by every subscriber
    sql.execute("UPDATE background_tasks SET progress = 30, description = 'working' WHERE id = %s", (tid,))
    [upd] = await collect(alice, 1)
    assert upd.row["progress"] == 30 and upd.seq > ev.seq
    assert await bob.next_batch(0.2) == []


async def test_filters_by_type_project_and_status_including_leaving_the_set(
    hub: Hub, sql: psycopg.Connection[Any]
) -> None:
    by_type = hub.subscribe(TaskFilter(task_types=frozenset({"sleep"})))
    by_project = hub.subscribe(TaskFilter(project_id="p1"))
    pending_only = hub.subscribe(TaskFilter(statuses=frozenset({"pending"})))
    [noop] = insert(sql, 1, task_type="noop", project="p1")
    [sleep] = insert(sql, 1, task_type="sleep")
    assert {e.task_id for e in await collect(by_type, 1)} == {sleep}
    assert {e.task_id for e in await collect(by_project, 1)} == {noop}
    assert len(await collect(pending_only, 2)) == 2
    sql.execute("UPDATE background_tasks SET status = 'cancelled' WHERE id = %s", (noop,))
    [left] = await collect(pending_only, 1)  # it was pending: the subscriber learns it left the set
    assert left.row["status"] == "cancelled"
    sql.execute("UPDATE background_tasks SET status = 'pending' WHERE id = %s", (noop,))
    sql.execute("UPDATE background_tasks SET status = 'processing' WHERE id = %s", (sleep,))
    got = await collect(pending_only, 2)
    assert {e.task_id for e in got} == {noop, sleep}


async def test_slow_subscriber_is_coalesced_then_dropped_with_a_reason(
    database_url: str, pool: object, sql: psycopg.Connection[Any]
) -> None:
    hub = Hub(database_url, pool, buffer=3)
    await hub.start()
    try:
        await hub.wait_until(lambda: hub.connected, 10, "first LISTEN connection")
        slow, fast = hub.subscribe(TaskFilter()), hub.subscribe(TaskFilter())
        [tid] = insert(sql, 1)
        for p in (10, 20, 30, 40):
            sql.execute("UPDATE background_tasks SET progress = %s WHERE id = %s", (p, tid))
            await collect(fast, 1)
        # slow read nothing: five changes of one task are one buffered event, the latest.
        [latest] = await slow.next_batch(1)
        assert latest.row is not None and latest.row["progress"] == 40
        ids = []
        for _ in range(4):  # four distinct tasks > buffer of three; the fast one reads each at once
            ids += insert(sql, 1)
            [ev] = await collect(fast, 1)
            assert ev.task_id == ids[-1]
        await hub.wait_until(lambda: slow.closed, 5, "slow subscriber dropped")
        assert slow.closed_reason and "slow consumer" in slow.closed_reason
        assert f"Last-Event-ID {latest.seq}" in slow.closed_reason
        assert await slow.next_batch(0) == []
        assert not fast.closed
        assert hub.subscriber_count == 1
    finally:
        await hub.stop()


async def test_deleted_task_reaches_its_followers_and_owner(hub: Hub, sql: psycopg.Connection[Any]) -> None:
    [tid] = insert(sql, 1, "alice")
    alice, bob = hub.subscribe(TaskFilter(user_id="alice")), hub.subscribe(TaskFilter(user_id="bob"))
    await collect(alice, 1)
    follower = hub.subscribe(TaskFilter(task_id=tid))
    sql.execute("DELETE FROM background_tasks WHERE id = %s", (tid,))
    [d] = await collect(follower, 1)
    assert d.kind == "deleted" and d.task_id == tid
    [d2] = await collect(alice, 1)
    assert d2.kind == "deleted"
    assert await bob.next_batch(0.2) == []


async def test_queue_settings_change_reaches_streams_that_asked(hub: Hub, sql: psycopg.Connection[Any]) -> None:
    admin, user = hub.subscribe(TaskFilter(queue=True)), hub.subscribe(TaskFilter(user_id="alice"))
    sql.execute("UPDATE task_queue_settings SET is_active = false")
    [ev] = await collect(admin, 1)
    assert ev.kind == "queue" and ev.data["isActive"] is False
    assert await user.next_batch(0.2) == []


async def test_no_subscriber_misses_a_terminal_event_when_the_listen_connection_is_killed(
    hub: Hub, sql: psycopg.Connection[Any]
) -> None:
    ids = insert(sql, 120, "alice")
    streams = [hub.subscribe(TaskFilter()) for _ in range(5)] + [hub.subscribe(TaskFilter(user_id="alice"))]
    followers = {tid: hub.subscribe(TaskFilter(task_id=tid)) for tid in ids}
    done: dict[int, set[str]] = {id(s): set() for s in [*streams, *followers.values()]}

    async def drain(sub: Subscriber) -> None:
        while not sub.closed:
            for ev in await sub.next_batch(1):
                if ev.kind == "task" and ev.row is not None and ev.row["status"] == "completed":
                    assert ev.task_id is not None
                    done[id(sub)].add(ev.task_id)

    drainers = [asyncio.create_task(drain(s)) for s in [*streams, *followers.values()]]
    kills = 0
    try:
        for i in range(0, len(ids), 10):
            sql.execute(
                "UPDATE background_tasks SET status = 'completed' WHERE id = ANY(%s)", (ids[i : i + 10],)
            )
            if i % 30 == 0:
                generation = hub.generation
                await hub.wait_until(lambda: hub.listen_pid is not None, 10, "LISTEN connection up")
                killed = sql.execute("SELECT pg_terminate_backend(%s) AS ok", (hub.listen_pid,)).fetchone()
                assert killed and killed["ok"]
                kills += 1
                # Tasks keep completing while the hub is away (no waiting for it here) ...
                sql.execute(
                    "UPDATE background_tasks SET status = 'completed' WHERE id = ANY(%s)",
                    (ids[i + 10 : i + 15],),
                )

                def reconnected(after: int = generation) -> bool:
                    return hub.generation > after

                await hub.wait_until(reconnected, 10, "reconnect after kill")
            await asyncio.sleep(0.01)
        everything = set(ids)
        try:
            await hub.wait_until(
                lambda: (
                    all(done[id(s)] == everything for s in streams)
                    and all(done[id(s)] == {tid} for tid, s in followers.items())
                ),
                15,
                "every subscriber saw every completion",
            )
        except TimeoutError:
            missing = {i: (s.closed_reason, len(everything - done[id(s)])) for i, s in enumerate(streams)}
            lost = [tid for tid, s in followers.items() if done[id(s)] != {tid}]
            raise AssertionError(
                f"streams (closed, missed): {missing}; followers that missed: {lost}"
            ) from None
        assert kills >= 4 and hub.generation >= 5
    finally:
        for t in drainers:
            t.cancel()
        await asyncio.gather(*drainers, return_exceptions=True)
