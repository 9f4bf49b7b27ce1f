"""Fan-out of live updates: N concurrent SSE clients on one API process, the time from a status change's
commit to each client's receipt (p50/p99/max), and the API process's memory.

    .venv/bin/python -m bench.fanout --clients 1000 --changes 20
    .venv/bin/python -m bench.fanout --clients 200 --database-url postgresql://...   # your own server

Without --database-url it starts an embedded PostgreSQL (fsync off) in a temporary directory. The API runs as
`bgtasks api` in a subprocess; the clients are raw asyncio streams in this process (lighter than an HTTP
client library, so the measuring side is not the bottleneck). Each change is one UPDATE that flips a task's
status (pending <-> processing) and sets its progress to the change number; its "commit time" is when the
commit returned to us, and a client's receipt time is when the event carrying that number was read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PROGRESS = re.compile(rb'"progress":(\d+)')
EVENT_ID = re.compile(rb"^id: *(\S+)", re.MULTILINE)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "OPENAI_"))}
    env.update(DATABASE_URL=url, BGTASKS_DEV="1", BGTASKS_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               BGTASKS_MAX_STREAMS_PER_USER="100000")  # every client is the local user
    proc = subprocess.Popen(
        [sys.executable, "-m", "bgtasks.cli", "api", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("API exited:\n" + log.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("API did not answer /healthz within 30s")


class Client:
    """One SSE connection to /api/events; records when each change number arrives. A client the server drops
    (event: dropped, a slow consumer) reconnects with Last-Event-ID, as a browser's EventSource does; what it
    then does not receive stays missing (a resume sends each task's current state, not every change)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received: dict[int, float] = {}
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.dropped = 0
        self.last_id: str | None = None

    async def run(self, port: int, path: str) -> None:
        while await self._stream(port, path):
            self.dropped += 1

    async def _stream(self, port: int, path: str) -> bool:
        """One connection; True when the server dropped it (reconnect), False when it ended."""
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        resume = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id else ""
        # A loopback Host: dev mode refuses any other (DNS rebinding).
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n"
                          .encode())
        await self.writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        pending = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return False
            now = time.time()
            # Only whole messages: a read can end inside one (the rest comes with the next read). Counting the
            # pieces of a split message as nothing (as this client did before) showed as lost deliveries.
            pending += chunk
            end = pending.rfind(b"\n\n")
            if end < 0:
                continue
            whole, pending = pending[: end + 2], pending[end + 2 :]
            if b"event: ready" in whole:
                self.ready.set()
            for m in PROGRESS.finditer(whole):
                self.received.setdefault(int(m.group(1)), now)
            ids = EVENT_ID.findall(whole)
            if ids:
                self.last_id = ids[-1].decode()
            if len(self.received) >= self.expected:
                self.done.set()
            if b"event: dropped" in whole:
                self.writer.transport.abort()
                return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def bench(url: str, clients: int, changes: int, interval: float) -> dict[str, float]:
    """Run the measurement with an API process of its own; returns p50/p99 ms, missing deliveries and RSS."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bgtasks-fanout-") as tmp:
        api = start_api(url, port, Path(tmp) / "api.log")
        try:
            return await measure(url, api.pid, port, clients, changes, interval)
        finally:
            api.terminate()
            try:
                api.wait(10)
            except subprocess.TimeoutExpired:
                api.kill()


async def measure(url: str, pid: int, port: int, n: int, changes: int, interval: float) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as sql:
        row = sql.execute(
            "INSERT INTO background_tasks (task_type, user_id) VALUES ('fanout', 'bench') RETURNING id"
        ).fetchone()
        assert row
        task_id = row[0]
        idle_rss = rss_mb(pid)
        cs = [Client(changes) for _ in range(n)]
        t0 = time.monotonic()
        runners = [asyncio.create_task(c.run(port, "/api/events?type=fanout")) for c in cs]
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in cs)), 120)
        connect_s = time.monotonic() - t0
        connected_rss = rss_mb(pid)
        commits: dict[int, float] = {}
        status = "pending"
        for k in range(1, changes + 1):
            status = "processing" if status == "pending" else "pending"
            sql.execute(
                "UPDATE background_tasks SET status = %s, progress = %s WHERE id = %s", (status, k, task_id)
            )
            commits[k] = time.time()
            await asyncio.sleep(interval)
        with contextlib.suppress(TimeoutError):  # what never arrives is reported as missing
            await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in cs)), 10)
        peak_rss = rss_mb(pid)
        for c in cs:
            c.close()
        for r in runners:
            r.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    lat = sorted((c.received[k] - commits[k]) * 1000 for c in cs for k in commits if k in c.received)
    missing = n * changes - len(lat)
    dropped = sum(c.dropped for c in cs)
    # A change missing while a later one of the same task arrived was coalesced: the hub keeps the latest state
    # per task for a subscriber that has not read the earlier one yet (service/hub.py), by design.
    coalesced = sum(1 for c in cs for k in commits if k not in c.received and any(j > k for j in c.received))
    last_client = [
        max(c.received[k] for c in cs if k in c.received) - commits[k]
        for k in commits
        if any(k in c.received for c in cs)
    ]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")

    print(
        f"clients {n}, changes {changes} ({interval * 1000:.0f} ms apart), "
        f"deliveries {len(lat)}, missing {missing} (of them coalesced into a later state {coalesced}), "
        f"dropped by the server and resumed {dropped}"
    )
    print(f"connect: all {n} subscribed in {connect_s:.2f}s")
    print(
        f"commit -> receipt: p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {lat[-1] if lat else 0:.1f} ms, "
        f"mean {statistics.fmean(lat) if lat else 0:.1f} ms"
    )
    if last_client:
        print(
            f"commit -> last client of a change: median {statistics.median(last_client) * 1000:.1f} ms, "
            f"max {max(last_client) * 1000:.1f} ms"
        )
    print(
        f"API RSS: idle {idle_rss:.0f} MB, {n} clients {connected_rss:.0f} MB "
        f"(~{(connected_rss - idle_rss) * 1024 / max(n, 1):.0f} KB per client), end {peak_rss:.0f} MB"
    )
    return {"p50": pct(50), "p99": pct(99), "missing": float(missing), "dropped": float(dropped),
            "coalesced": float(coalesced),
            "rss_mb": connected_rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--changes", type=int, default=20, help="status changes to time")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between changes")
    p.add_argument("--database-url", help="an existing PostgreSQL (default: embedded, in a temp directory)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * args.clients + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the API subprocess inherits it
    if args.database_url:
        asyncio.run(bench(args.database_url, args.clients, args.changes, args.interval))
        return
    from bgtasks import db
    from bgtasks.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="bgtasks-fanout-pg-") as tmp:
        pg = EmbeddedPostgres(Path(tmp), fast=True)
        pg.start()
        try:
            db.migrate(pg.url())
            asyncio.run(bench(pg.url(), args.clients, args.changes, args.interval))
        finally:
            pg.destroy()


if __name__ == "__main__":
    main()
