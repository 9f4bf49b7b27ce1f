"""Which URL each kind of connection uses, and whether DATABASE_URL goes through a transaction pooler
(pgbouncer's pool_mode=transaction, the default pooler of several managed services). Behind one, a client
connection is not a server session: pooled connections prepare no statements and keep no session state,
and whatever needs a session of its own (LISTEN, session advisory locks, migrations) uses the direct URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from .errors import ConfigError
from .settings import Settings

log = logging.getLogger("bgtasks.connections")

PROBE_ROUNDS = 3

NEEDS_DIRECT_URL = (
    "DATABASE_URL goes through a transaction pooler (e.g. pgbouncer pool_mode=transaction), where LISTEN and "
    "session locks do not work: set BGTASKS_DIRECT_DATABASE_URL to a URL of PostgreSQL itself "
    "(or BGTASKS_POOLER=none if there is no such pooler)"
)


@dataclass(frozen=True)
class Connections:
    """The URLs of one process. `url`: pools and short transactions (may be a pooler); `direct`: LISTEN,
    session locks and migrations (BGTASKS_DIRECT_DATABASE_URL, else DATABASE_URL); `transaction_pooler`:
    `url` is one, so no server-side prepared statements on its connections."""

    url: str
    direct: str
    transaction_pooler: bool = False

    @property
    def prepare(self) -> bool:
        """Whether connections to `url` may keep server-side prepared statements."""
        return not self.transaction_pooler


def resolve(settings: Settings, url: str | None = None) -> Connections:
    """The connections of a process started with `settings` (DATABASE_URL, or `url` when given). Raises
    ConfigError, one line saying what to set, for a transaction pooler without a direct URL."""
    url = url or settings.database_url
    if not url:
        raise ConfigError("DATABASE_URL: not set")
    direct = settings.bgtasks_direct_database_url
    if settings.bgtasks_pooler == "auto":
        pooled = detect_transaction_pooler(url)
    else:
        pooled = settings.bgtasks_pooler == "transaction"
    if pooled and not direct:
        raise ConfigError(NEEDS_DIRECT_URL)
    if pooled:
        log.info("DATABASE_URL is a transaction pooler: no prepared statements; LISTEN and locks go direct")
    return Connections(url, direct or url, pooled)


def detect_transaction_pooler(url: str) -> bool:
    """Whether two transactions of one client connection can run on different server sessions.

    Client connection A asks for its backend pid (its transaction ends: a transaction pooler frees that
    server session), then B opens a transaction. If B is handed A's backend, or A, asking again while B
    holds that transaction, is handed another one, client connections are not sessions. Directly or through
    a session pooler neither can happen, so the answer is never a false "yes"; a transaction pooler is found
    in the first round unless other clients keep taking the freed session (then the next round). Two
    connections and a few round trips, once per process start."""
    with _probe(url) as a, _probe(url) as b:
        for _ in range(PROBE_ROUNDS):
            first = _backend_pid(a)
            with b.transaction():
                if _backend_pid(b) == first:
                    return True
                # A's session is free (B holds another): asking now cannot wait on B.
                if _backend_pid(a) != first:
                    return True
    return False


def _probe(url: str) -> psycopg.Connection[tuple[int]]:
    return psycopg.connect(url, autocommit=True, prepare_threshold=None, connect_timeout=5,
                           application_name="bgtasks pooler probe")


def _backend_pid(conn: psycopg.Connection[tuple[int]]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])
