"""pgqueuer (1.x, asyncpg driver) on the benchmark's work: enqueue, drain at concurrency 1 and 10 with
dequeue batches of 10, and the pickup latency of an idle worker woken by LISTEN/NOTIFY.

Concurrency c is the entrypoint's `concurrency_limit=c` (enforced in SQL, pgqueuer's per-task cap), with a
batch of min(10, c); the library default, no limit, is measured too and runs the latency worker. The worker's
QueueManager and the producer each have their own connection, in one process and event loop.
Run: `python -m bench.peers.pgqueuer_bench [--n 10000] [--database-url URL]`.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode

from bench.common import (
    DRAIN,
    ENQUEUE_BATCH,
    ENQUEUE_BATCH_SIZE,
    ENQUEUE_ONE,
    LATENCY_SAMPLES,
    PICKUP,
    BenchResult,
    Probe,
    Stats,
    create_database,
    drop_database,
    main,
    pickup_latencies,
    rate,
    vacuum_analyze,
)

SYSTEM = "pgqueuer"
DATABASE = "bench_pgqueuer"
ENTRYPOINT = "noop"
BATCH_SIZE = 10  # pgqueuer's dequeue batch (its default)
CONCURRENCIES = (1, 10)
UNLIMITED = 0


async def _queue_manager(url: str, probe: Probe, concurrency: int) -> tuple[QueueManager, asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint(ENTRYPOINT, concurrency_limit=concurrency)
    async def noop(job: Job) -> None:
        probe.hit(int(job.payload or b"0"))

    return qm, conn


def _batch_size(concurrency: int) -> int:
    """Dequeue batches of 10, or fewer under a smaller limit: a batch of 10 cannot be picked under a limit of 1,
    and the completion log buffer, sized like the batch, would then flush only on its 0.1 s timer."""
    return min(BATCH_SIZE, concurrency) if concurrency != UNLIMITED else BATCH_SIZE


async def _enqueue_batched(queries: Queries, n: int) -> None:
    for start in range(0, n, ENQUEUE_BATCH_SIZE):
        keys = range(start, min(n, start + ENQUEUE_BATCH_SIZE))
        await queries.enqueue([ENTRYPOINT] * len(keys), [str(k).encode() for k in keys], [0] * len(keys))


async def _drain(url: str, queries: Queries, probe: Probe, n: int, concurrency: int) -> float:
    await queries.clear_queue()
    await _enqueue_batched(queries, n)
    await vacuum_analyze(url, "pgqueuer")
    qm, conn = await _queue_manager(url, probe, concurrency)
    probe.expect(n)
    try:
        await qm.run(batch_size=_batch_size(concurrency), mode=QueueExecutionMode.drain)
    finally:
        await conn.close()
    left = sum(s.count for s in await queries.queue_size())
    if probe.seen != n or left:
        raise RuntimeError(f"pgqueuer drain ran {probe.seen} of {n} jobs, {left} left in the queue")
    return probe.drain_rate()


async def run(database_url: str, n: int = 10_000, samples: int = LATENCY_SAMPLES) -> list[BenchResult]:
    """All scenarios on a fresh database `bench_pgqueuer` of the server at `database_url`."""
    url = await create_database(database_url, DATABASE)
    probe = Probe()
    results: list[BenchResult] = []
    producer = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(producer))
    try:
        await queries.install()

        started = time.perf_counter()
        for key in range(n):
            await queries.enqueue(ENTRYPOINT, str(key).encode())
        results.append(BenchResult(SYSTEM, ENQUEUE_ONE, rate(n, time.perf_counter() - started), "jobs/s"))

        await queries.clear_queue()
        started = time.perf_counter()
        await _enqueue_batched(queries, n)
        results.append(BenchResult(SYSTEM, ENQUEUE_BATCH, rate(n, time.perf_counter() - started), "jobs/s"))

        for concurrency in CONCURRENCIES:
            value = await _drain(url, queries, probe, n, concurrency)
            results.append(BenchResult(SYSTEM, DRAIN.format(concurrency), value, "jobs/s"))
        value = await _drain(url, queries, probe, n, UNLIMITED)
        results.append(BenchResult(SYSTEM, DRAIN.format("unlimited"), value, "jobs/s"))

        await queries.clear_queue()
        qm, conn = await _queue_manager(url, probe, UNLIMITED)
        worker = asyncio.create_task(qm.run(batch_size=BATCH_SIZE))
        try:
            probe.expect(1)  # a first job proves the worker is up and listening
            await queries.enqueue(ENTRYPOINT, b"-1")
            await probe.wait("pgqueuer worker start", within=30)
            latencies = await pickup_latencies(
                lambda key: queries.enqueue(ENTRYPOINT, str(key).encode()), probe, samples
            )
        finally:
            qm.shutdown.set()
            await worker
            await conn.close()
        results += Stats.of(latencies).results(SYSTEM, PICKUP, "ms")
    finally:
        await producer.close()
        await drop_database(database_url, DATABASE)
    return results


if __name__ == "__main__":
    main(run, __doc__ or "")
