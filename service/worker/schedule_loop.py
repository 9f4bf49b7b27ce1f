"""The scheduler thread: creates the tasks of due cron schedules (service/scheduler.py) twice a second; any
number of workers may run it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from psycopg_pool import ConnectionPool

from .. import scheduler

log = logging.getLogger("bgtasks.worker")


def schedule_loop(pool: ConnectionPool[Any], stopping: threading.Event) -> None:
    while not stopping.wait(scheduler.TICK_S):
        try:
            with pool.connection(timeout=5) as conn:
                scheduler.run_due_schedules(conn)
        except Exception as exc:  # keep ticking through outages
            log.warning("scheduler tick failed: %s", exc)
