"""The raw SQL floor: what PostgreSQL itself allows for enqueue and claim-and-complete, with no queue library.

A plain table (id bigserial, status text, payload jsonb, created_at) with a partial index on pending rows, as
every queue has; a claim is one short `FOR UPDATE SKIP LOCKED` statement and a completion another, both
autocommitted, so no lock is held while a job "runs". Run: `python -m bench.peers.raw_floor [--n 10000]`.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.common import (
    DRAIN,
    ENQUEUE_BATCH,
    ENQUEUE_BATCH_SIZE,
    ENQUEUE_ONE,
    BenchResult,
    create_database,
    drop_database,
    main,
    rate,
    vacuum_analyze,
)

SYSTEM = "raw SQL"
DATABASE = "bench_raw_floor"
CLAIM_BATCH = 100
CONNECTIONS = 10

SCHEMA = """
CREATE TABLE raw_jobs (
    id bigserial PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending',
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX raw_jobs_pending ON raw_jobs (id) WHERE status = 'pending';
"""
INSERT_ONE = "INSERT INTO raw_jobs (payload) VALUES ($1::jsonb)"
INSERT_MANY = "INSERT INTO raw_jobs (payload) SELECT p FROM unnest($1::jsonb[]) AS p"
CLAIM = """
UPDATE raw_jobs SET status = 'running'
WHERE id IN (
    SELECT id FROM raw_jobs WHERE status = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING id
"""
COMPLETE = "UPDATE raw_jobs SET status = 'done' WHERE id = ANY($1::bigint[])"
PAYLOAD = "{}"


async def _insert_batched(conn: asyncpg.Connection, n: int) -> None:
    for start in range(0, n, ENQUEUE_BATCH_SIZE):
        await conn.execute(INSERT_MANY, [PAYLOAD] * min(ENQUEUE_BATCH_SIZE, n - start))


async def _reset(conn: asyncpg.Connection, url: str, pending: int) -> None:
    await conn.execute("TRUNCATE raw_jobs")
    await _insert_batched(conn, pending)
    await vacuum_analyze(url, "raw_jobs")


async def _worker(url: str, batch: int) -> int:
    """Claim up to `batch` pending jobs, complete them, repeat until none is left; return how many."""
    conn = await asyncpg.connect(url)
    done = 0
    try:
        while ids := [r["id"] for r in await conn.fetch(CLAIM, batch)]:
            await conn.execute(COMPLETE, ids)
            done += len(ids)
    finally:
        await conn.close()
    return done


async def _drain(url: str, n: int, connections: int, batch: int) -> float:
    """Jobs/s draining `n` pending jobs with `connections` workers claiming `batch` at a time."""
    started = time.perf_counter()
    done = sum(await asyncio.gather(*(_worker(url, batch) for _ in range(connections))))
    elapsed = time.perf_counter() - started
    if done != n:
        raise RuntimeError(f"raw floor drained {done} jobs, expected {n}")
    return rate(n, elapsed)


async def run(database_url: str, n: int = 10_000) -> list[BenchResult]:
    """All raw-floor scenarios on a fresh database `bench_raw_floor` of the server at `database_url`."""
    url = await create_database(database_url, DATABASE)
    results: list[BenchResult] = []
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA)

        started = time.perf_counter()
        for _ in range(n):
            await conn.execute(INSERT_ONE, PAYLOAD)
        results.append(BenchResult(SYSTEM, ENQUEUE_ONE, rate(n, time.perf_counter() - started), "jobs/s"))

        await conn.execute("TRUNCATE raw_jobs")
        started = time.perf_counter()
        await _insert_batched(conn, n)
        results.append(BenchResult(SYSTEM, ENQUEUE_BATCH, rate(n, time.perf_counter() - started), "jobs/s"))

        for connections, batch, scenario in (
            (1, 1, DRAIN.format(1)),
            (CONNECTIONS, 1, DRAIN.format(CONNECTIONS)),
            (1, CLAIM_BATCH, f"drain batch={CLAIM_BATCH}"),
        ):
            await _reset(conn, url, n)
            results.append(BenchResult(SYSTEM, scenario, await _drain(url, n, connections, batch), "jobs/s"))
    finally:
        await conn.close()
        await drop_database(database_url, DATABASE)
    return results


if __name__ == "__main__":
    main(run, __doc__ or "")
