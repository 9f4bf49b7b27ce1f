"""Logging setup: readable lines by default, one JSON object per line with BGTASKS_LOG_JSON=1."""

from __future__ import annotations

import json
import logging
import sys
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


def quiet_asyncpg_pool() -> None:
    """asyncpg's pool logs a full traceback each time it fails to reconnect its floor of connections (every
    1, 2, 4 … 60 s through an outage); the exception's one line says all there is to say."""
    logging.getLogger("asyncpg.pool").addFilter(_ONE_LINE)


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


class Throttled:
    """At most one line per `every_s` for a condition that repeats (a database outage meets every request):
    the first at once, then one saying how many more there were since. Not thread-safe (one event loop)."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.every_s, self.clock = logger, every_s, clock
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (when last logged, repeats since)

    def warning(self, key: str, msg: str, *args: object) -> bool:
        """Log `msg` unless `key` was logged under `every_s` ago (then count it); True when logged."""
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            msg += f" ({last[1]} more since {now - last[0]:.0f}s ago)"
        self._seen[key] = (now, 0)
        self.logger.warning(msg, *args)
        return True
