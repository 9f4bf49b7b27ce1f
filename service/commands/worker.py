"""`bgtasks worker --app myapp.tasks --concurrency N`: a worker process that runs the loaded task types."""

from __future__ import annotations

import argparse

from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("worker", help="run a worker process (claims and runs tasks)")
    p.add_argument("--concurrency", "-c", type=int, help="tasks run at once (default BGTASKS_WORKER_CONCURRENCY)")
    p.add_argument("--app", action="append", default=[], metavar="MODULE",
                   help="a module of task types to load, e.g. myapp.tasks (repeatable; also BGTASKS_APP)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import actors, db
    from ..connections import resolve as resolve_connections
    from ..logs import configure_logging
    from ..running import database_url
    from ..settings import load_settings
    from ..task_modules import load_task_types
    from ..worker import run_worker

    settings = load_settings()
    url = database_url(settings)  # DATABASE_URL, else the database of a running `bgtasks up` (said on stderr)
    if not settings.database_url:
        settings = load_settings(database_url=url)
    if args.concurrency is not None and not 1 <= args.concurrency <= 1000:
        raise ConfigError("--concurrency: must be between 1 and 1000")
    configure_logging(settings)
    load_task_types(settings, args.app)
    if not actors.TASK_TYPES:
        raise ConfigError("no task types to run: give --app MODULE (or BGTASKS_APP), or leave "
                          "BGTASKS_BUILTIN_TYPES on")
    db.check_schema(url)
    connections = resolve_connections(settings)  # a transaction pooler without a direct URL: one line, exit 2
    return run_worker(settings, args.concurrency or settings.bgtasks_worker_concurrency, connections)
