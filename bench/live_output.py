"""Live partial output: what a streaming model call costs the database. N tasks stream a model's answer (the
local OpenAI-compatible test server: P pieces over S seconds each) through real workers' code; a LISTEN
connection records every `bgtasks_output` NOTIFY. Prints the payload sizes and the writes per second per task.

    .venv/bin/python -m bench.live_output --tasks 8 --pieces 200 --seconds 4
    .venv/bin/python -m bench.live_output --database-url postgresql://...   # your own server (admin URL)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections import defaultdict
from typing import Any

import psycopg

import bgtasks
from bench.common import create_database, on_server
from bgtasks import actors, db
from bgtasks.settings import load_settings
from bgtasks.store import worker as worker_store
from bgtasks.worker import Runtime
from tests.fakes.openai_server import FakeOpenAI, streamed

TYPE = "bench-writer"


@bgtasks.task_type(TYPE, description="Streams a text from the model (bench/live_output.py)")
async def _write(task: bgtasks.Task, payload: dict[str, Any]) -> dict[str, str]:
    return {"text": await task.generate_text(system="You write.", user="Write.")}


def _run_tasks(url: str, base_url: str, n: int) -> None:
    """One worker runtime of concurrency n runs the n tasks at once (claim, actor, complete)."""
    settings = load_settings(database_url=url, openai_api_key="bench-key", openai_base_url=base_url)
    runtime = Runtime(settings, concurrency=n)
    try:
        rows = runtime.claimer.claim_if_due()
        assert len(rows) == n, f"claimed {len(rows)} of {n}"

        def one(row: dict[str, Any]) -> None:
            ctx = runtime.in_flight.begin(row["id"], row["attempt"])
            result = asyncio.run(actors.TASK_TYPES[TYPE].load()(ctx))
            with runtime.pool.connection() as conn:
                worker_store.complete_tasks(conn, [(row["id"], row["attempt"], result)])

        threads = [threading.Thread(target=one, args=(r,)) for r in rows]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        runtime.claimer.drop_connection()
        runtime.pool.close()


def measure(url: str, tasks: int, pieces: int, seconds: float) -> None:
    db.migrate(url)
    text = "".join(f"w{i} " for i in range(pieces))
    seen: list[tuple[float, str, int]] = []  # (time, task id, payload bytes)
    stop = threading.Event()
    listening = threading.Event()

    def listen() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("LISTEN bgtasks_output")
            listening.set()
            while not stop.is_set():
                for note in conn.notifies(timeout=0.2):
                    seen.append((time.monotonic(), json.loads(note.payload)["id"], len(note.payload.encode())))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listening.wait(10)
    with FakeOpenAI() as fake, psycopg.connect(url, autocommit=True) as conn:
        fake.always(streamed(text, pieces=pieces, over_s=seconds))
        conn.execute("INSERT INTO user_limits (user_id, max_created_per_minute) VALUES ('bench', 1000000) "
                     "ON CONFLICT (user_id) DO UPDATE SET max_created_per_minute = 1000000")
        for _ in range(tasks):
            conn.execute("INSERT INTO background_tasks (task_type, user_id, payload) VALUES (%s, 'bench', '{}')",
                         (TYPE,))
        started = time.monotonic()
        _run_tasks(url, fake.base_url, tasks)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        stop.set()
        listener.join(5)
        left = conn.execute("SELECT count(*) FROM task_output").fetchone()
    per_task: dict[str, list[float]] = defaultdict(list)
    for at, task, _size in seen:
        per_task[task].append(at)
    sizes = [s for _, _, s in seen]
    peaks = []
    for stamps in per_task.values():  # the most writes of one task in any one-second window
        peaks.append(max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps))
    rates = [len(st) / max(1e-9, st[-1] - st[0]) for st in per_task.values() if len(st) > 1]
    print(f"{tasks} tasks x {pieces} pieces over {seconds:g} s each; run took {elapsed:.1f} s")
    print(f"NOTIFY payloads: {len(sizes)}, bytes max {max(sizes)}, mean {statistics.mean(sizes):.0f}")
    print(f"writes per task: mean {statistics.mean(len(v) for v in per_task.values()):.1f} "
          f"(vs {pieces} pieces streamed)")
    print(f"writes per second per task: mean {statistics.mean(rates):.1f}, "
          f"most in any 1 s window {max(peaks)}")
    print(f"task_output rows left after the tasks finished: {left[0] if left else '?'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="admin URL of a server to use (default: a throwaway one)")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--pieces", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    opts = parser.parse_args()

    def go(admin: str) -> None:
        url = asyncio.run(create_database(admin, "bgtasks_bench_output"))
        measure(url, opts.tasks, opts.pieces, opts.seconds)

    on_server(opts.database_url, go)


if __name__ == "__main__":
    main()
