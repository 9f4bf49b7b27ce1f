"""procrastinate (3.x, PsycopgConnector) on the benchmark's work: enqueue, drain at concurrency 1 and 10, and
the pickup latency of an idle worker woken by LISTEN/NOTIFY.

Worker and producer share this process and event loop, as in procrastinate's own async usage. The pool has
room for every concurrent job plus the worker's listener and fetches, so the pool is not what is measured.
Run: `python -m bench.peers.procrastinate_bench [--n 10000] [--database-url URL]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import asyncpg
import procrastinate
from procrastinate.types import JSONDict

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

SYSTEM = "procrastinate"
DATABASE = "bench_procrastinate"
CONCURRENCIES = (1, 10)
POOL_SIZE = max(CONCURRENCIES) + 4
NoopTask = procrastinate.tasks.Task[..., Coroutine[Any, Any, None], ...]


def _app(url: str, probe: Probe) -> tuple[procrastinate.App, NoopTask]:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url, min_size=2, max_size=POOL_SIZE)
    )

    @app.task(name="noop")
    async def noop(key: int) -> None:
        probe.hit(key)

    return app, noop


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    finally:
        await conn.close()


async def _succeeded(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"))
    finally:
        await conn.close()


async def run(database_url: str, n: int = 10_000, samples: int = LATENCY_SAMPLES) -> list[BenchResult]:
    """All scenarios on a fresh database `bench_procrastinate` of the server at `database_url`."""
    url = await create_database(database_url, DATABASE)
    probe = Probe()
    app, noop = _app(url, probe)
    results: list[BenchResult] = []
    try:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

            started = time.perf_counter()
            for key in range(n):
                await noop.defer_async(key=key)
            results.append(BenchResult(SYSTEM, ENQUEUE_ONE, rate(n, time.perf_counter() - started), "jobs/s"))

            await _reset(url)
            started = time.perf_counter()
            await _defer_batched(noop, n)
            results.append(
                BenchResult(SYSTEM, ENQUEUE_BATCH, rate(n, time.perf_counter() - started), "jobs/s")
            )

            for concurrency in CONCURRENCIES:
                await _reset(url)
                await _defer_batched(noop, n)
                await vacuum_analyze(url, "procrastinate_jobs")
                probe.expect(n)
                # wait=False: the worker stops once the queue is empty and its running jobs are done.
                await app.run_worker_async(concurrency=concurrency, wait=False, install_signal_handlers=False)
                if probe.seen != n or await _succeeded(url) != n:
                    raise RuntimeError(f"procrastinate drain ran {probe.seen} of {n} jobs")
                results.append(BenchResult(SYSTEM, DRAIN.format(concurrency), probe.drain_rate(), "jobs/s"))

            await _reset(url)
            worker = asyncio.create_task(app.run_worker_async(concurrency=1, install_signal_handlers=False))
            try:
                probe.expect(1)  # a first job proves the worker is up and listening
                await noop.defer_async(key=-1)
                await probe.wait("procrastinate worker start", within=30)
                latencies = await pickup_latencies(lambda key: noop.defer_async(key=key), probe, samples)
            finally:
                worker.cancel()  # procrastinate's way to stop a worker gracefully
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            results += Stats.of(latencies).results(SYSTEM, PICKUP, "ms")
    finally:
        await drop_database(database_url, DATABASE)
    return results


async def _defer_batched(noop: NoopTask, n: int) -> None:
    for start in range(0, n, ENQUEUE_BATCH_SIZE):
        jobs: list[JSONDict] = [{"key": key} for key in range(start, min(n, start + ENQUEUE_BATCH_SIZE))]
        await noop.batch_defer_async(*jobs)


if __name__ == "__main__":
    # Through the module's real name: procrastinate warns about an App built in `__main__` (its workers could
    # not import the tasks), which is beside the point for an in-process benchmark.
    from bench.peers.procrastinate_bench import run as run_imported

    main(run_imported, __doc__ or "")
