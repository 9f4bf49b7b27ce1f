"""The benchmark: bgtasks, pgqueuer, procrastinate and the raw SQL floor on the same work, in one process
tree and against one PostgreSQL, then a table and the ratios the performance goals are stated in.

Run: `python -m bench [--n 10000] [--fast] [--database-url URL] [--skip-peers] [--fanout-clients 1000]
[--scale-rows 1000000]`.
Quote medians of several runs on a quiet machine: the table prints the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess

from bench import bgtasks_bench
from bench.common import (
    DRAIN,
    ENQUEUE_BATCH,
    ENQUEUE_ONE,
    PICKUP,
    BenchResult,
    create_database,
    drop_database,
    embedded_postgres,
    load_note,
    print_table,
    server_settings,
)


def _value(results: list[BenchResult], system: str, scenario: str) -> float | None:
    return next((r.value for r in results if r.system == system and r.scenario == scenario), None)


def goals(results: list[BenchResult], fanout: dict[str, float] | None) -> list[str]:
    """The issue's targets, each a ratio from this run."""
    out = []

    def line(name: str, value: float | None, target: str, met: bool | None) -> None:
        shown = "n/a" if value is None else f"{value:.2f}"
        out.append(f"{name:<74} {shown:>8}  target {target:<8} {'' if met is None else ('met' if met else 'NOT met')}")

    for scenario in (ENQUEUE_ONE, ENQUEUE_BATCH):
        mine, theirs = _value(results, "bgtasks", scenario), _value(results, "pgqueuer", scenario)
        r0 = mine / theirs if mine and theirs else None
        line(f"{scenario}: bgtasks / pgqueuer", r0, ">= 1.0", None if r0 is None else r0 >= 1.0)
    c1, c32 = (_value(results, "bgtasks", bgtasks_bench.HTTP_CREATE.format(c)) for c in bgtasks_bench.HTTP_CLIENTS)
    rh = c32 / c1 if c1 and c32 else None
    line("HTTP create: c=32 / c=1", rh, ">= 1.0", None if rh is None else rh >= 1.0)
    ours = _value(results, "bgtasks", DRAIN.format(10))
    pgq = _value(results, "pgqueuer", DRAIN.format(10))
    floor = _value(results, "raw SQL", "drain batch=100")
    r1 = ours / pgq if ours and pgq else None
    line("drain c=10: bgtasks / pgqueuer", r1, ">= 1.5", None if r1 is None else r1 >= 1.5)
    r2 = ours / floor if ours and floor else None
    line("drain c=10: bgtasks / raw batched floor", r2, ">= 0.25", None if r2 is None else r2 >= 0.25)
    p99 = _value(results, "bgtasks", f"{PICKUP} p99")
    peers = [v for v in (_value(results, s, f"{PICKUP} p99") for s in ("pgqueuer", "procrastinate")) if v]
    r3 = p99 / min(peers) if p99 and peers else None
    line("pickup p99: bgtasks / better peer", r3, "<= 1.0", None if r3 is None else r3 <= 1.0)
    for scenario, what in ((bgtasks_bench.DRAIN_LIMITED_HIGH, "100 (checked, not reached)"),
                           (bgtasks_bench.DRAIN_LIMITED, "10 (= threads: no claiming ahead)")):
        limited = _value(results, "bgtasks", scenario)
        r4 = limited / ours if limited and ours else None
        line(f"drain c=10, max_concurrent_tasks {what} / none", r4, ">= 0.8", None if r4 is None else r4 >= 0.8)
    if fanout:
        line(f"SSE fan-out p99 ms ({int(fanout['clients'])} clients, missing {int(fanout['missing'])}, "
             f"dropped+resumed {int(fanout.get('dropped', 0))})",
             fanout["p99"], "<= 100", fanout["p99"] <= 100 and fanout["missing"] == 0)
    return out


async def run_all(url: str, n: int, skip_peers: bool, fanout_clients: int, commit: str, scale_rows: int = 0) -> None:
    print("server: " + ", ".join(f"{k}={v}" for k, v in (await server_settings(url)).items()), flush=True)
    print(f"machine: {load_note()}", flush=True)
    results: list[BenchResult] = []
    results += await bgtasks_bench.run(url, n)
    if not skip_peers:
        from bench.peers import pgqueuer_bench, procrastinate_bench, raw_floor

        results += await pgqueuer_bench.run(url, n)
        results += await procrastinate_bench.run(url, n)
        results += await raw_floor.run(url, n)
    fan: dict[str, float] | None = None
    if fanout_clients:
        from bench import fanout
        from bgtasks import db

        fan_url = await create_database(url, "bench_fanout")
        db.migrate(fan_url)
        try:
            fan = await fanout.bench(fan_url, fanout_clients, changes=20, interval=0.25)
            fan["clients"] = fanout_clients
        finally:
            await drop_database(url, "bench_fanout")
    scale: list[tuple[str, float]] = []
    if scale_rows:
        from bench import scale as scale_bench

        scaled = await scale_bench.run(url, scale_rows)
        results += scaled
        scale = scale_bench.ratios(scaled)
    print(f"machine: {load_note()}", flush=True)
    print(f"\ncommit {commit or '?'}, n = {n}\n")
    print_table(results, baseline="bgtasks")
    print()
    print("\n".join(goals(results, fan)))
    for name, ratio in scale:
        print(f"{name + f' p50 at {scale_rows:,} finished / empty table':<74} {ratio:>8.2f}  target {'<= 3.0':<8} "
              f"{'met' if ratio <= 3 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="admin URL of a server to use (default: a throwaway embedded one)")
    parser.add_argument("--n", type=int, default=10_000, help="jobs per throughput scenario")
    parser.add_argument("--fast", action="store_true", help="embedded server: fsync=off, synchronous_commit=off")
    parser.add_argument("--skip-peers", action="store_true", help="only bgtasks (no `bench` extra needed)")
    parser.add_argument("--fanout-clients", type=int, default=1000, help="SSE clients for the fan-out (0: skip)")
    parser.add_argument("--scale-rows", type=int, default=1_000_000,
                        help="finished tasks for the lists-at-scale scenario (0: skip)")
    opts = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * opts.fanout_clients + 512)), hard))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if opts.database_url:
        asyncio.run(run_all(opts.database_url, opts.n, opts.skip_peers, opts.fanout_clients, commit,
                            opts.scale_rows))
        return
    with embedded_postgres(fast=opts.fast) as url:
        asyncio.run(run_all(url, opts.n, opts.skip_peers, opts.fanout_clients, commit, opts.scale_rows))


if __name__ == "__main__":
    main()
