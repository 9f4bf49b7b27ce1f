"""Long I/O-bound tasks at high concurrency (issue 22): N tasks that each await S seconds (the shape of a
model call), one worker process at concurrency C. Prints the rate as a fraction of the ideal C/S, the
worker's CPU in cores, the most database connections it held at once and the ERROR lines it logged, with
procrastinate (one event loop, in this process) at the same concurrency beside it.

Run: `python -m bench.long_tasks [--concurrency 1000] [--n 2000] [--seconds 2] [--skip-peers]`.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from pathlib import Path

import psutil

from bench.bgtasks_bench import Child, _env, _reset
from bench.common import create_database, drop_database, embedded_postgres, load_note
from bgtasks import db
from bgtasks.store.tasks import TaskSpec, create_tasks


async def bgtasks_long(url: str, concurrency: int, n: int, seconds: float, threads: int = 0) -> dict[str, float]:
    bench_url = await create_database(url, "bench_long")
    db.migrate(bench_url)
    pool = await db.create_pool(bench_url, min_size=1, max_size=2)
    try:
        await pool.execute("INSERT INTO user_limits (user_id, max_created_per_minute) VALUES ('bench', 1000000000)")
        await _reset(pool, active=False)
        for start in range(0, n, 1000):
            await create_tasks(pool, [TaskSpec("sleep", "bench", {"seconds": seconds, "steps": 1})]
                               * min(1000, n - start))
        worker = Child(["worker", "--concurrency", str(concurrency)], _env(bench_url, BGTASKS_WORKER_THREADS=str(threads)),
                       ready="ready")
        proc = psutil.Process(worker.proc.pid)
        connections = 0
        try:
            cpu0 = proc.cpu_times()
            t0 = time.monotonic()
            await pool.execute("UPDATE task_queue_settings SET is_active = true")
            deadline = time.monotonic() + 60 + 4 * n * seconds / concurrency
            while await pool.fetchval("SELECT count(*) FROM background_tasks WHERE status = 'completed'") < n:
                if time.monotonic() > deadline:
                    raise RuntimeError("bgtasks long tasks: not all completed in time")
                connections = max(connections, await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'bgtasks worker%'"))
                await asyncio.sleep(0.1)
            cpu1 = proc.cpu_times()
            wall = time.monotonic() - t0
            log = await asyncio.to_thread(Path(worker.log.name).read_text, errors="replace")
        finally:
            worker.stop()
        seconds_taken = float(await pool.fetchval(
            "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM background_tasks"))
        return {"of_ideal": n / seconds_taken / (concurrency / seconds),
                "cores": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall,
                "connections": connections, "errors": sum(1 for ln in log.splitlines() if "ERROR" in ln)}
    finally:
        await pool.close()
        await drop_database(url, "bench_long")


async def procrastinate_long(url: str, concurrency: int, n: int, seconds: float) -> dict[str, float]:
    import procrastinate

    bench_url = await create_database(url, "bench_long_procrastinate")
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=bench_url, min_size=2, max_size=14))
    done: list[float] = []

    @app.task(name="sleep")
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)
        done.append(time.monotonic())

    try:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            for start in range(0, n, 1000):
                await sleep.batch_defer_async(*[{"seconds": seconds}] * min(1000, n - start))
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.monotonic()
            await app.run_worker_async(concurrency=concurrency, wait=False, install_signal_handlers=False)
            wall = time.monotonic() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await drop_database(url, "bench_long_procrastinate")
    return {"of_ideal": len(done) / wall / (concurrency / seconds),
            "cores": (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / wall,
            "connections": 14, "errors": 0}


async def run(url: str, concurrency: int, n: int, seconds: float, peers: bool, threads: int = 0) -> None:
    print(f"machine: {load_note()}", flush=True)
    rows = [("bgtasks", await bgtasks_long(url, concurrency, n, seconds, threads))]
    if peers:
        rows.append(("procrastinate", await procrastinate_long(url, concurrency, n, seconds)))
    print(f"machine: {load_note(judge=False)}")
    print(f"\nlong tasks: {n} x {seconds:g} s at concurrency {concurrency} (ideal {concurrency / seconds:g}/s)")
    print(f"{'system':<14} {'of ideal':>9} {'cores':>6} {'db conns':>9} {'ERROR lines':>12}")
    for system, r in rows:
        conns = "pool 14" if system == "procrastinate" else f"{r['connections']:.0f}"
        print(f"{system:<14} {r['of_ideal']:>9.2f} {r['cores']:>6.2f} {conns:>9} {r['errors']:>12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="BGTASKS_WORKER_THREADS of the worker (0: one per slot)")
    opts = parser.parse_args()
    if opts.database_url:
        asyncio.run(run(opts.database_url, opts.concurrency, opts.n, opts.seconds, not opts.skip_peers, opts.threads))
        return
    with embedded_postgres() as url:
        asyncio.run(run(url, opts.concurrency, opts.n, opts.seconds, not opts.skip_peers, opts.threads))


if __name__ == "__main__":
    main()
