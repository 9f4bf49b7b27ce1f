"""Flat costs at scale: each documented list of GET /api/tasks (every sort, a search) and GET /metrics, p50 on
an empty table and again with N finished tasks (generated in SQL), through one real API process.

Run: `python -m bench.scale [--n 1000000] [--fast] [--database-url URL]`, or as part of `python -m bench`.
The goal (issue 22): each p50 at 1,000,000 finished tasks <= 3x its empty-table p50.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx

from bench.bgtasks_bench import Child, _env
from bench.common import BenchResult, Stats, create_database, drop_database, main, vacuum_analyze
from bgtasks import db

SYSTEM = "bgtasks"
DATABASE = "bench_scale"
SAMPLES = 40
CHUNK = 100_000  # rows per INSERT: each statement's trigger NOTIFYs and counts its rows at once
# What a page of each list asks for; the names are the table's scenario names.
LISTS: dict[str, str] = {
    "list sort=-createdAt": "/api/tasks?limit=100",
    "list sort=createdAt": "/api/tasks?limit=100&sort=createdAt",
    "list sort=-updatedAt": "/api/tasks?limit=100&sort=-updatedAt",
    "list sort=updatedAt": "/api/tasks?limit=100&sort=updatedAt",
    "list sort=-priority": "/api/tasks?limit=100&sort=-priority",
    "list sort=priority": "/api/tasks?limit=100&sort=priority",
    "list q=(rare text)": "/api/tasks?limit=100&q=" + quote("report 424242"),
    "list q=(common text)": "/api/tasks?limit=100&q=" + quote("weekly"),
    "list status=error": "/api/tasks?limit=100&status=error",
    "list unfinished, -priority": "/api/tasks?limit=20&status=pending,processing&sort=-priority",  # docs/api.md
    "/metrics": "/metrics",
}

FILL = """
INSERT INTO background_tasks (task_type, user_id, priority, label, description, status, payload, result_data,
                              created_at, updated_at, started_at, completed_at, attempt)
SELECT 'noop', 'local', (i * 7919) % 21 - 10,
       CASE WHEN i % 3 = 0 THEN 'weekly report ' ELSE 'report ' END || i,
       'generated task number ' || i || ' for the scale benchmark',
       (ARRAY['completed', 'completed', 'completed', 'error', 'cancelled']::task_status[])[1 + i % 5],
       '{}'::jsonb, CASE WHEN i % 5 < 3 THEN jsonb_build_object('n', i) END,
       t.created, t.created + interval '2 seconds', t.created + interval '1 second', t.created + interval '2 seconds',
       1
FROM generate_series($1::bigint, $2::bigint) i,
     -- Spread over the last 30 days, the newest within the metrics window (finished seconds ago).
     LATERAL (SELECT now() - (($3::bigint - i) * (interval '30 days' / $3::bigint)) - interval '3 seconds' AS created) t
"""


async def _p50s(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(600):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        for name, path in LISTS.items():
            samples = []
            for i in range(SAMPLES + 3):
                t0 = time.perf_counter()
                r = await client.get(path)
                elapsed = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:200]}")
                if i >= 3:  # the first requests prepare the statements on the pool's connections
                    samples.append(elapsed)
            out[name] = Stats.of(samples).p50
    return out


async def _measure(url: str) -> dict[str, float]:
    from tests.processes import free_port

    port = free_port()
    api = Child(["api", "--port", str(port)], _env(url, BGTASKS_DEV="1"), ready=None)
    try:
        return await _p50s(f"http://127.0.0.1:{port}")
    except RuntimeError:
        log = await asyncio.to_thread(Path(api.log.name).read_text, errors="replace")
        print(log[-3000:], flush=True)  # the API's side of it
        raise
    finally:
        api.stop()


async def fill(url: str, n: int) -> float:
    """N finished tasks in SQL, CHUNK rows per statement (the triggers keep task_counts), and 1,000 pending ones;
    seconds taken."""
    conn = await asyncpg.connect(url)
    t0 = time.perf_counter()
    try:
        for start in range(1, n + 1, CHUNK):
            await conn.execute(FILL, start, min(start + CHUNK - 1, n), n)
        # A live queue beside the history: pending tasks not due for an hour (no worker runs here anyway).
        await conn.execute("INSERT INTO background_tasks (task_type, user_id, priority, label, run_at) "
                           "SELECT 'noop', 'local', i % 7, 'queued ' || i, now() + interval '1 hour' "
                           "FROM generate_series(1, 1000) i")
    finally:
        await conn.close()
    await vacuum_analyze(url, "background_tasks")
    return time.perf_counter() - t0


async def run(url: str, n: int = 1_000_000) -> list[BenchResult]:
    bench_url = await create_database(url, DATABASE)
    db.migrate(bench_url)
    try:
        empty = await _measure(bench_url)
        seconds = await fill(bench_url, n)
        print(f"scale: filled {n:,} finished tasks in {seconds:.0f}s", flush=True)
        full = await _measure(bench_url)
    finally:
        await drop_database(url, DATABASE)
    results = []
    for name in LISTS:
        results.append(BenchResult(SYSTEM, f"{name} p50, empty", empty[name], "ms"))
        results.append(BenchResult(SYSTEM, f"{name} p50, {n:,} finished", full[name], "ms"))
    return results


def ratios(results: list[BenchResult]) -> list[tuple[str, float]]:
    """(list, p50 full / p50 empty) for each list measured."""
    by = {r.scenario: r.value for r in results if r.system == SYSTEM}
    out = []
    for name in LISTS:
        empty = by.get(f"{name} p50, empty")
        full = next((v for k, v in by.items() if k.startswith(f"{name} p50, ") and k.endswith(" finished")), None)
        if empty and full:
            out.append((name, full / empty))
    return out


async def _run_and_report(url: str, n: int) -> list[BenchResult]:
    results = await run(url, n)
    for name, ratio in ratios(results):
        print(f"scale: {name:<24} {ratio:5.2f}x empty  ({'met' if ratio <= 3 else 'NOT met'}: <= 3)", flush=True)
    return results


if __name__ == "__main__":
    main(_run_and_report, "bgtasks lists and /metrics: empty table against N finished tasks", baseline=None)
