"""`bgtasks up`: everything on one machine. With no DATABASE_URL, an embedded PostgreSQL in the data
directory (kept across runs); then migrate, and run the HTTP service and one worker until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import psycopg

from .. import db
from ..settings import Settings, load_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("up", help="run database (embedded unless DATABASE_URL), API and a worker together")
    p.add_argument("--host", help="bind address (default BGTASKS_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default BGTASKS_PORT, 8000)")
    p.add_argument("--data-dir", help="where the embedded database lives (default BGTASKS_DATA_DIR)")
    p.add_argument("--concurrency", type=int, help="worker concurrency (default BGTASKS_WORKER_CONCURRENCY)")
    p.set_defaults(func=run)


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host:
        overrides["bgtasks_host"] = args.host
    if args.port is not None:
        overrides["bgtasks_port"] = args.port
    if args.data_dir:
        overrides["bgtasks_data_dir"] = args.data_dir
    if args.concurrency:
        overrides["bgtasks_worker_concurrency"] = args.concurrency
    settings = load_settings(**overrides)

    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    embedded = None
    children: list[subprocess.Popen[bytes]] = []
    try:
        url = settings.database_url
        if not url:
            from ..embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(settings.bgtasks_data_dir / "postgres")
            print(f"bgtasks: starting embedded PostgreSQL in {embedded.data_dir}", flush=True)
            embedded.start()
            _ensure_database(embedded.url(), "bgtasks")
            url = embedded.url("bgtasks")
        db.migrate(url)
        env = {**os.environ, "DATABASE_URL": url, "BGTASKS_HOST": settings.bgtasks_host,
               "BGTASKS_PORT": str(settings.bgtasks_port)}
        base = [sys.executable, "-m", "bgtasks.cli"]
        # Children get their own session: a Ctrl-C reaches only us, and we stop them in order.
        children.append(subprocess.Popen(
            [*base, "worker", "--concurrency", str(settings.bgtasks_worker_concurrency)], env=env,
            start_new_session=True))
        children.append(subprocess.Popen([*base, "api"], env=env, start_new_session=True))
        print(_banner(settings, url), flush=True)
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    print(f"bgtasks: a child process exited with code {child.returncode}; stopping",
                          file=sys.stderr, flush=True)
                    stopping = True
            time.sleep(0.2)
        return 0
    finally:
        print("bgtasks: stopping", flush=True)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.bgtasks_shutdown_grace_s + 5
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if embedded is not None:
            embedded.stop()
        print("bgtasks: stopped", flush=True)


def _banner(settings: Settings, url: str) -> str:
    host = settings.bgtasks_host
    shown = f"[{host}]" if ":" in host else host
    lines = [f"bgtasks: serving on http://{shown}:{settings.bgtasks_port}/  (database {url})"]
    if settings.bgtasks_dev and settings.is_loopback:
        lines.append("bgtasks: development mode: requests without credentials act as the local superuser "
                     "'local' (loopback only)")
    return "\n".join(lines)
