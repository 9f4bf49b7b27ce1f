"""Logging setup: readable lines by default, one JSON object per line with BGTASKS_LOG_JSON=1."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable

from .settings import Settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("task_id", "task_type", "worker_id", "attempt"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class WithoutTraceback(logging.Filter):
    """Turn an expected failure logged with its traceback into one line: the message, then the exception's
    type and first line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            record.msg = f"{record.getMessage()}: {type(exc).__name__}{': ' + first if first else ''}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_driver_pools() -> None:
    """The drivers' pools log each failed reconnect through an outage: psycopg's as a warning per attempt,
    asyncpg's (its floor of connections, every 1, 2, 4 … 60 s) with a full traceback. One line, throttled."""
    logging.getLogger("asyncpg.pool").addFilter(_ONE_LINE)
    for name in ("asyncpg.pool", "psycopg.pool"):
        logging.getLogger(name).addFilter(THROTTLE)


_ONE_LINE = WithoutTraceback()


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.bgtasks_log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.bgtasks_log_level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)


class Throttle(logging.Filter):
    """Warnings that repeat through an outage (on every request, every retry, every tick) pass at most once
    per `every_s` per kind: the logger and the message template, or `extra={"throttle_key": ...}`. The first
    passes at once; the next one says how many were held back meanwhile. Other levels pass untouched."""

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # kind -> (when it last passed, held back)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, str(getattr(record, "throttle_key", record.msg)))
        with self._lock:
            now = self.clock()
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.every_s:
                self._seen[key] = (last[0], last[1] + 1)
                return False
            self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} ({last[1]} more like it in the last {now - last[0]:.0f}s)"
            record.args = None
        return True


THROTTLE = Throttle()


def outage_logger(name: str) -> logging.Logger:
    """The logger of a module whose warnings repeat through an outage, throttled (THROTTLE)."""
    logger = logging.getLogger(name)
    logger.addFilter(THROTTLE)
    return logger
