"""`bgtasks api`: the HTTP service (REST, SSE, dashboard) under uvicorn."""

from __future__ import annotations

import argparse
import gc

from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("api", help="run the HTTP service")
    p.add_argument("--host", help="bind address (default BGTASKS_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default BGTASKS_PORT, 8000)")
    p.add_argument("--app", action="append", default=[], metavar="MODULE",
                   help="a module of task types to load here too (optional: the API validates from what workers publish), e.g. myapp.tasks (repeatable; also BGTASKS_APP)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from .. import db
    from ..api.app import create_app
    from ..connections import resolve as resolve_connections
    from ..logs import configure_logging
    from ..settings import load_settings
    from ..task_modules import load_task_types

    overrides = {k: v for k, v in (("bgtasks_host", args.host), ("bgtasks_port", args.port)) if v is not None}
    settings = load_settings(**overrides)
    if not settings.database_url:
        raise ConfigError("DATABASE_URL: not set (`bgtasks up` runs everything against an embedded PostgreSQL)")
    configure_logging(settings)
    load_task_types(settings, args.app)
    db.check_schema(settings.database_url)
    connections = resolve_connections(settings)  # a transaction pooler without a direct URL: one line, exit 2
    config = uvicorn.Config(
        create_app(settings, connections), host=settings.bgtasks_host, port=settings.bgtasks_port,
        log_level=settings.bgtasks_log_level.lower(), access_log=False, timeout_graceful_shutdown=5,
        lifespan="on",
        log_config=None,  # uvicorn's own loggers go through configure_logging (BGTASKS_LOG_JSON) too
    )
    config.load()  # imports the event loop and protocol modules now, so that the freeze below covers them
    # Everything made so far (modules, classes, the app) lives as long as the process. Frozen, the cyclic
    # GC stops re-scanning it in every full collection: a full collection stops the event loop, and with
    # a thousand SSE subscribers it is what decides the slowest deliveries (docs/live-updates.md).
    gc.freeze()
    uvicorn.Server(config).run()
    return 0
