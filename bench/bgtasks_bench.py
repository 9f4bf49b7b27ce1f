"""bgtasks on the benchmark's work, through the real broker, worker processes and Dramatiq actors: enqueue
(Python API, one by one and in batches), drain of no-op tasks at concurrency 1 and 10, the same drain under
a global limit, pickup latency with an idle worker, and HTTP create requests per second on one API process.

Workers and the API run as `bgtasks worker` / `bgtasks api` child processes, as in production; the noop
actor appends its start time to a journal file for the pickup-latency samples.
Run: `python -m bench.bgtasks_bench [--n 10000] [--database-url URL]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from bench.common import (
    DRAIN,
    ENQUEUE_BATCH,
    ENQUEUE_BATCH_SIZE,
    ENQUEUE_ONE,
    LATENCY_SAMPLES,
    PICKUP,
    BenchResult,
    Stats,
    create_database,
    drop_database,
    main,
    rate,
    vacuum_analyze,
)
from bgtasks import db
from bgtasks.store.tasks import TaskSpec, create_task, create_tasks

SYSTEM = "bgtasks"
DATABASE = "bench_bgtasks"
DRAIN_LIMITED = "drain c=10, limit 10"  # the limit equals the threads: no room to claim ahead
DRAIN_LIMITED_HIGH = "drain c=10, limit 100"  # the limit is set and checked on every claim, but not reached
HTTP_CREATE = "HTTP create (1 API process) c={}"  # .format(concurrent clients)
HTTP_CLIENTS = (1, 32)
# The benchmark measures throughput, not the default creation rate (user_limits, 1,000 a minute).
RAISE_CREATION_RATE = ("INSERT INTO user_limits (user_id, max_created_per_minute) "
                       "VALUES ('bench', 1000000000), ('local', 1000000000)")


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "OPENAI_"))}
    env.update(DATABASE_URL=url, BGTASKS_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **extra)
    return env


class Child:
    """A bgtasks process (worker or API) started for a scenario and stopped after it."""

    def __init__(self, args: list[str], env: dict[str, str], ready: str | None) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="bench-bgtasks-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bgtasks.cli", *args], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while ready and ready not in Path(self.log.name).read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"bgtasks {args[0]} did not start:\n" + Path(self.log.name).read_text()[-2000:]
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        os.unlink(self.log.name)


async def _reset(pool: asyncpg.Pool, *, active: bool, limit: int | None = None) -> None:
    await pool.execute("TRUNCATE background_tasks CASCADE")
    await pool.execute(
        "UPDATE task_queue_settings SET is_active = $1, max_concurrent_tasks = $2", active, limit
    )


async def _completed(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(sum(n), 0) FROM task_counts WHERE status = 'completed'"))


async def _enqueue(pool: asyncpg.Pool, n: int) -> list[BenchResult]:
    await _reset(pool, active=False)
    t0 = time.perf_counter()
    for _ in range(n):
        await create_task(pool, TaskSpec("noop", "bench"))
    one = rate(n, time.perf_counter() - t0)
    await _reset(pool, active=False)
    t0 = time.perf_counter()
    for start in range(0, n, ENQUEUE_BATCH_SIZE):
        await create_tasks(pool, [TaskSpec("noop", "bench")] * min(ENQUEUE_BATCH_SIZE, n - start))
    batch = rate(n, time.perf_counter() - t0)
    return [
        BenchResult(SYSTEM, ENQUEUE_ONE, one, "jobs/s"),
        BenchResult(SYSTEM, ENQUEUE_BATCH, batch, "jobs/s"),
    ]


async def _drain(url: str, pool: asyncpg.Pool, n: int, concurrency: int, limit: int | None) -> float:
    await _reset(pool, active=False, limit=limit)
    for start in range(0, n, ENQUEUE_BATCH_SIZE):
        await create_tasks(pool, [TaskSpec("noop", "bench")] * min(ENQUEUE_BATCH_SIZE, n - start))
    await vacuum_analyze(url, "background_tasks")
    worker = Child(["worker", "--concurrency", str(concurrency)], _env(url), ready="ready")
    try:
        await pool.execute("UPDATE task_queue_settings SET is_active = true")
        deadline = time.monotonic() + 600
        while await _completed(pool) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bgtasks drain c={concurrency}: {await _completed(pool)} of {n} done")
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
    seconds = await pool.fetchval(
        "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM background_tasks"
    )
    return rate(n, float(seconds))


async def _pickup(url: str, pool: asyncpg.Pool, samples: int) -> list[float]:
    await _reset(pool, active=True)
    journal = Path(tempfile.mkdtemp(prefix="bench-journal-")) / "journal.jsonl"
    worker = Child(
        ["worker", "--concurrency", "10"], _env(url, BGTASKS_TEST_JOURNAL=str(journal)), ready="ready"
    )
    conn = await db.connect(url)
    latencies: list[float] = []
    starts: dict[str, float] = {}
    read = 0  # journal bytes read so far: each poll reads only what was appended, so waiting stays cheap

    def poll_journal() -> None:
        nonlocal read
        if not journal.exists():
            return
        with journal.open("rb") as f:
            f.seek(read)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        read += len(complete)
        for line in complete.splitlines():
            entry = json.loads(line)
            if entry["event"] == "start":
                starts[entry["task"]] = entry["t"]

    try:
        for i in range(samples):
            await asyncio.sleep(0.02)
            task_id = f"pickup-{i}"
            await conn.execute(
                "INSERT INTO background_tasks (id, task_type, user_id) VALUES ($1, 'noop', 'b')", task_id
            )
            committed = time.time()
            deadline = time.monotonic() + 10
            while task_id not in starts:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pickup sample {i} never started")
                await asyncio.sleep(0.0005)
                poll_journal()
            latencies.append((starts[task_id] - committed) * 1000)
    finally:
        await conn.close()
        worker.stop()
    return latencies


async def _http_create(url: str, pool: asyncpg.Pool, n: int, clients: int = 16) -> float:
    await _reset(pool, active=False)
    from tests.processes import free_port

    port = free_port()
    api = Child(["api", "--port", str(port)], _env(url, BGTASKS_DEV="1"), ready=None)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(200):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            remaining = n

            async def one_client() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    r = await client.post("/api/tasks", json={"taskType": "noop", "payload": {}})
                    if r.status_code != 201:
                        raise RuntimeError(f"HTTP create answered {r.status_code}: {r.text[:200]}")

            t0 = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(clients)))
            return rate(n, time.perf_counter() - t0)
    finally:
        api.stop()


async def run(url: str, n: int = 10_000, samples: int = LATENCY_SAMPLES) -> list[BenchResult]:
    bench_url = await create_database(url, DATABASE)
    db.migrate(bench_url)
    pool = await db.create_pool(bench_url, min_size=1, max_size=4)
    try:
        await pool.execute(RAISE_CREATION_RATE)
        results = await _enqueue(pool, n)
        for c in (1, 10):
            results.append(
                BenchResult(SYSTEM, DRAIN.format(c), await _drain(bench_url, pool, n, c, None), "jobs/s")
            )
        results.append(BenchResult(SYSTEM, DRAIN_LIMITED, await _drain(bench_url, pool, n, 10, 10), "jobs/s"))
        results.append(
            BenchResult(SYSTEM, DRAIN_LIMITED_HIGH, await _drain(bench_url, pool, n, 10, 100), "jobs/s")
        )
        results += Stats.of(await _pickup(bench_url, pool, samples)).results(SYSTEM, PICKUP, "ms")
        for clients in HTTP_CLIENTS:
            value = await _http_create(bench_url, pool, min(n, 3000), clients)
            results.append(BenchResult(SYSTEM, HTTP_CREATE.format(clients), value, "req/s"))
        return results
    finally:
        await pool.close()
        await drop_database(url, DATABASE)


if __name__ == "__main__":
    main(run, "bgtasks through its real broker, worker processes and actors")
