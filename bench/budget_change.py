"""A provider budget changed at psql, seen by running workers (issue 18): two `bgtasks worker` processes at
concurrency 8 against the local OpenAI-compatible test server, a budget with no room so the model-calling tasks
wait in the queue (outcome budget_wait); then, `--rounds` times, an UPDATE of the budget, timed from the moment
it is sent (so each figure is an upper bound on the time since its commit, the UPDATE's own round trip included)
to (a) the first waiting task claimed again (its `processing` NOTIFY on bgtasks_tasks), its first budget
reservation, and (b) the first model request the test server receives after it. Prints each figure, their
median and max, the load average, the date and the commit.

    .venv/bin/python -m bench.budget_change [--rounds 5] [--tasks 4]
    .venv/bin/python -m bench.budget_change --database-url postgresql://...   # your own server (admin URL)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from starlette.responses import Response

from bench.bgtasks_bench import Child, _env
from bench.common import create_database, drop_database, load_note, on_server
from bgtasks import db
from tests.fakes.openai_server import FakeOpenAI, Scripted, answer

DATABASE = "bgtasks_bench_budget"
USER = "budgeted"
WORKERS = 2
CONCURRENCY = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="admin URL of a server to use (default: a throwaway one)")
    parser.add_argument("--rounds", type=int, default=5, help="budget changes measured (default 5)")
    parser.add_argument(
        "--tasks", type=int, default=4, help="tasks waiting for the budget in each round (default 4)"
    )
    opts = parser.parse_args(argv)
    if opts.rounds < 1 or opts.tasks < 1:
        parser.error("--rounds and --tasks must be at least 1")
    return opts


class Stamps:
    """Wall-clock times (`time.time`) of what the bench waits for, written by the listener and the server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: list[float] = []  # a task turned `processing`
        self.requests: list[float] = []  # the test server received a model request

    def first_after(self, which: list[float], since: float) -> float | None:
        with self.lock:
            return next((t for t in which if t >= since), None)


def stamped(stamps: Stamps, reply: Scripted) -> Scripted:
    """`reply`, noting when each request arrived."""

    async def timed(body: dict[str, Any], fake: FakeOpenAI) -> Response:
        with stamps.lock:
            stamps.requests.append(time.time())
        return await reply(body, fake)

    return timed


def listen(url: str, stamps: Stamps, listening: threading.Event, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("LISTEN bgtasks_tasks")
        listening.set()
        while not stop.is_set():
            for note in conn.notifies(timeout=0.2):
                at = time.time()
                if any(e.get("status") == "processing" for e in json.loads(note.payload)):
                    with stamps.lock:
                        stamps.claims.append(at)


def wait_for(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:.0f} s")
        time.sleep(0.02)


def count(conn: psycopg.Connection[Any], sql: str, *args: Any) -> int:
    row = conn.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


def one_round(
    conn: psycopg.Connection[Any], stamps: Stamps, provider: str, n: int, tasks: int
) -> tuple[float, float, float]:
    """Tasks left waiting for a budget with no room, then the change: milliseconds to the claim, to the first
    budget reservation (`provider_budget_reservations.reserved_at`, the server's clock) and to the request."""
    label = f"round-{n}"
    conn.execute("UPDATE provider_budgets SET requests_per_minute = 1 WHERE provider = %s", (provider,))
    conn.execute(
        "INSERT INTO background_tasks (task_type, user_id, payload, label) "
        "SELECT 'generation', %s, %s::jsonb, %s FROM generate_series(1, %s)",
        (USER, json.dumps({"amount": 1, "category": "Budgets"}), label, tasks),
    )
    # Round 0: one task spends the budget's one request; the others (every task later on) wait.
    wait_for(
        lambda: (
            count(
                conn,
                "SELECT count(*) FROM background_tasks t JOIN provider_budget_waits w "
                "ON w.task_id = t.id WHERE t.label = %s AND t.status = 'pending'",
                label,
            )
            == count(
                conn,
                "SELECT count(*) FROM background_tasks WHERE label = %s AND status <> 'completed'",
                label,
            )
            > 0
        ),
        120,
        f"round {n}: the tasks to wait for the budget",
    )
    changed = time.time()
    conn.execute(
        "UPDATE provider_budgets SET requests_per_minute = %s WHERE provider = %s", (1000 + n, provider)
    )
    committed = time.time()
    wait_for(
        lambda: (
            stamps.first_after(stamps.claims, changed) is not None
            and stamps.first_after(stamps.requests, changed) is not None
        ),
        60,
        f"round {n}: a claim and a model request after the change",
    )
    claim = stamps.first_after(stamps.claims, changed)
    request = stamps.first_after(stamps.requests, changed)
    assert claim is not None and request is not None
    claim_ms, request_ms = (claim - changed) * 1000, (request - changed) * 1000
    row = conn.execute(
        "SELECT extract(epoch FROM min(reserved_at)) FROM provider_budget_reservations "
        "WHERE reserved_at >= to_timestamp(%s)",
        (changed,),
    ).fetchone()
    reserve_ms = (float(row[0]) - changed) * 1000 if row and row[0] is not None else float("nan")
    print(
        f"round {n + 1}: claimed again after {claim_ms:.0f} ms, reserved after {reserve_ms:.0f} ms, "
        f"first model request after {request_ms:.0f} ms "
        f"(the UPDATE's round trip: {(committed - changed) * 1000:.0f} ms)",
        flush=True,
    )
    wait_for(
        lambda: (
            count(
                conn, "SELECT count(*) FROM background_tasks WHERE label = %s AND status = 'completed'", label
            )
            == tasks
        ),
        120,
        f"round {n}: the tasks to complete",
    )
    return claim_ms, reserve_ms, request_ms


def measure(url: str, rounds: int, tasks: int) -> tuple[list[float], list[float], list[float]]:
    """Per round: milliseconds from sending the UPDATE to the first claim, reservation and model request."""
    db.migrate(url)
    stamps = Stamps()
    stop, listening = threading.Event(), threading.Event()
    listener = threading.Thread(target=listen, args=(url, stamps, listening, stop), daemon=True)
    listener.start()
    listening.wait(10)
    claims: list[float] = []
    requests: list[float] = []
    reserves: list[float] = []
    with FakeOpenAI() as fake, psycopg.connect(url, autocommit=True) as conn:
        fake.always(stamped(stamps, answer()))
        provider = fake.base_url
        env = _env(url, OPENAI_BASE_URL=provider, OPENAI_API_KEY="bench-key", BGTASKS_MODEL="fake-model")
        # One request a minute: with the calls of the earlier rounds still counted, no task finds room.
        conn.execute(
            "INSERT INTO provider_budgets (provider, model, requests_per_minute) VALUES (%s, '*', 1)",
            (provider,),
        )
        workers = [
            Child(["worker", "--concurrency", str(CONCURRENCY)], env, ready="ready") for _ in range(WORKERS)
        ]
        try:
            for n in range(rounds):
                claim, reserve, request = one_round(conn, stamps, provider, n, tasks)
                claims.append(claim)
                reserves.append(reserve)
                requests.append(request)
            waits = count(conn, "SELECT count(*) FROM task_attempt_errors WHERE outcome = 'budget_wait'")
            print(f"budget_wait outcomes recorded: {waits}", flush=True)
        finally:
            for w in workers:
                w.stop()
            stop.set()
            listener.join(5)
    return claims, reserves, requests


def summary(name: str, samples: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(samples):.0f} ms, max {max(samples):.0f} ms "
        f"({', '.join(f'{s:.0f}' for s in samples)})"
    )


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit or '?'}, machine: {load_note()}", flush=True
    )

    def go(admin: str) -> None:
        url = asyncio.run(create_database(admin, DATABASE))
        try:
            claims, reserves, requests = measure(url, opts.rounds, opts.tasks)
        finally:
            asyncio.run(drop_database(admin, DATABASE))
        print(
            f"\n{WORKERS} workers at concurrency {CONCURRENCY}, {opts.rounds} budget changes at psql, "
            f"{opts.tasks} waiting tasks each; from sending the UPDATE (its commit included):"
        )
        print(summary("(a) first waiting task claimed again", claims))
        print(summary("    its first budget reservation", reserves))
        print(summary("(b) first model request the server received", requests))
        print(f"machine after: {load_note(judge=False)}")

    on_server(opts.database_url, go)


if __name__ == "__main__":
    main()
