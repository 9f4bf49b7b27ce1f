"""Where one 1-by-1 create's time goes (issue 22: enqueue 1-by-1 at about 0.5x pgqueuer).

Times, on one embedded PostgreSQL with fsync on, each step of the create path against SQL variants on the
same table: the Python store path (create_task), the SQL function enqueue_task(), a plain INSERT with
RETURNING * and RETURNING id, the same INSERT with the statement trigger background_tasks_after_insert
disabled, the raw floor's insert (bench.peers.raw_floor: a four-column table, one partial index) with a
pg_notify, check_creation_rate() alone, and `SELECT 1` (the round trip). Two rounds of N each; the differences are the costs.
Run: `python -m bench.enqueue_breakdown [N]` (default 2,000).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg

from bench.bgtasks_bench import RAISE_CREATION_RATE
from bench.common import create_database, drop_database, embedded_postgres, rate
from bench.peers import raw_floor
from bgtasks import db
from bgtasks.store.tasks import TaskSpec, create_task

INSERT = "INSERT INTO background_tasks (task_type, user_id) VALUES ('noop', 'bench') RETURNING "
RAW_INSERT_NOTIFY = (f"WITH i AS ({raw_floor.INSERT_ONE} RETURNING id) "
                     "SELECT pg_notify('bench', id::text) FROM i")


async def _timed(label: str, step: Callable[[], Awaitable[object]], n: int) -> None:
    for _ in range(n // 10):  # warm the plan caches and the pool
        await step()
    t0 = time.perf_counter()
    for _ in range(n):
        await step()
    seconds = time.perf_counter() - t0
    print(f"{label:58s} {rate(n, seconds):7,.0f}/s {seconds / n * 1e3:6.3f} ms", flush=True)


async def _run(admin: str, n: int) -> None:
    url = await create_database(admin, "bench_enqueue_breakdown")
    db.migrate(url)
    pool = await db.create_pool(url, min_size=1, max_size=2)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(RAISE_CREATION_RATE)
        await conn.execute(raw_floor.SCHEMA)
        spec = TaskSpec("noop", "bench")
        for round_no in (1, 2):
            print(f"-- round {round_no}")
            await _timed("create_task (the Python store path)", lambda: create_task(pool, spec), n)
            await _timed("SELECT * FROM enqueue_task('noop', 'bench')",
                         lambda: conn.fetchrow("SELECT * FROM enqueue_task('noop', 'bench')"), n)
            await _timed("INSERT ... RETURNING *", lambda: conn.fetchrow(INSERT + "*"), n)
            await _timed("INSERT ... RETURNING id", lambda: conn.fetchval(INSERT + "id"), n)
            await conn.execute("ALTER TABLE background_tasks DISABLE TRIGGER background_tasks_after_insert")
            await _timed("INSERT ... RETURNING id, after-insert trigger disabled", lambda: conn.fetchval(INSERT + "id"), n)
            await conn.execute("ALTER TABLE background_tasks ENABLE TRIGGER background_tasks_after_insert")
            await _timed("the raw floor's insert + pg_notify",
                         lambda: conn.fetchval(RAW_INSERT_NOTIFY, raw_floor.PAYLOAD), n)
            await _timed("SELECT check_creation_rate('bench', 1)",
                         lambda: conn.execute("SELECT check_creation_rate('bench', 1)"), n)
            await _timed("SELECT 1 (the round trip)", lambda: conn.fetchval("SELECT 1"), n)
    finally:
        await conn.close()
        await pool.close()
        await drop_database(admin, "bench_enqueue_breakdown")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with embedded_postgres(fast=False) as admin:
        asyncio.run(_run(admin, n))


if __name__ == "__main__":
    main()
