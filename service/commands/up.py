"""`bgtasks up`: everything on one machine. With no DATABASE_URL, an embedded PostgreSQL in the data
directory (kept across runs); then migrate, and run the HTTP service and one worker until Ctrl-C."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from ..settings import Settings

EXIT_FAILED, EXIT_PORT_BUSY = 1, 2  # and 0 after Ctrl-C or SIGTERM (docs/operations.md)
READY_TIMEOUT_S = 60.0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("up", help="run database (embedded unless DATABASE_URL), API and a worker together")
    p.add_argument("--host", help="bind address (default BGTASKS_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default BGTASKS_PORT, 8000)")
    p.add_argument("--data-dir", help="where the embedded database lives (default BGTASKS_DATA_DIR)")
    p.add_argument("--concurrency", type=int, help="worker concurrency (default BGTASKS_WORKER_CONCURRENCY)")
    p.add_argument("--app", action="append", default=[], metavar="MODULE",
                   help="a module of task types the worker loads, e.g. myapp.tasks (repeatable; also BGTASKS_APP)")
    p.set_defaults(func=run)


def _ensure_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _port_busy(host: str, port: int) -> bool:
    """Whether the API could not bind (host, port): as uvicorn binds, SO_REUSEADDR, so TIME_WAIT is no obstacle."""
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _fail(message: str) -> int:
    print(f"bgtasks: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def _exited(children: list[subprocess.Popen[bytes]]) -> str | None:
    for name, child in zip(("worker", "api"), children, strict=False):  # the api may not be started yet
        if child.poll() is not None:
            return f"the {name} process exited with code {child.returncode}; stopping"
    return None


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run(args: argparse.Namespace) -> int:
    from .. import db, running
    from ..settings import load_settings
    from ..task_modules import BUILTIN, module_names

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
    if _port_busy(settings.bgtasks_host, settings.bgtasks_port):
        print(f"bgtasks: port {settings.bgtasks_port} on {settings.bgtasks_host} is in use; pick another with "
              "--port N or BGTASKS_PORT=N", file=sys.stderr, flush=True)
        return EXIT_PORT_BUSY

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
            try:
                embedded.start()
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                return _fail(f"embedded PostgreSQL did not start: {str(exc).splitlines()[0]} "
                             f"(log: {embedded.data_dir / 'postgres.log'})")
            _ensure_database(embedded.url(), "bgtasks")
            url = embedded.url("bgtasks")
        # Migrations run DDL on a session of their own: past a pooler, on the direct URL when one is given.
        direct = settings.bgtasks_direct_database_url if settings.database_url else None
        db.migrate(direct or url)
        base_url = _base_url(settings)
        env = {**os.environ, "DATABASE_URL": url, "BGTASKS_HOST": settings.bgtasks_host,
               "BGTASKS_PORT": str(settings.bgtasks_port)}
        if settings.dev_mode_in_up:
            env["BGTASKS_DEV"] = "true"
        if args.app:  # both children: the worker runs them, the API knows them before a worker publishes
            env["BGTASKS_APP"] = ",".join(n for n in module_names(settings, args.app) if n != BUILTIN)
        base = [sys.executable, "-m", "bgtasks.cli"]
        # Children get their own session: a Ctrl-C reaches only us, and we stop them in order.
        children.append(subprocess.Popen(
            [*base, "worker", "--concurrency", str(settings.bgtasks_worker_concurrency)], env=env,
            start_new_session=True))
        children.append(subprocess.Popen([*base, "api"], env=env, start_new_session=True))
        # "serving on" only once the API answers; a child that dies first ends `up` with one line.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not stopping and not _healthy(base_url):
            if (why := _exited(children)) is not None:
                return _fail(why)
            if time.monotonic() > deadline:
                return _fail(f"the API did not answer {base_url}/healthz within {READY_TIMEOUT_S:.0f}s; stopping")
            time.sleep(0.1)
        if stopping:
            return 0
        if embedded is not None:
            running.record(settings.bgtasks_data_dir, url, base_url)
        print(_banner(settings, url), flush=True)
        while not stopping:
            if (why := _exited(children)) is not None:
                return _fail(why)
            time.sleep(0.2)
        return 0
    finally:
        if embedded is not None:
            running.clear(settings.bgtasks_data_dir)
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


def _base_url(settings: Settings) -> str:
    host = settings.bgtasks_host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.bgtasks_port}"


def _banner(settings: Settings, url: str) -> str:
    lines = [f"bgtasks: serving on {_base_url(settings)}/  (database {url})"]
    if settings.dev_mode_in_up:
        lines.append("bgtasks: development mode: requests without credentials act as the local superuser "
                     "'local' (loopback only)")
    return "\n".join(lines)
