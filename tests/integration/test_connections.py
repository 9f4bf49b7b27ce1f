"""Finding a transaction pooler in front of PostgreSQL (service/connections.py), against Debian's pgbouncer
in both pool modes and PostgreSQL itself; and the one-line refusal without a direct URL."""

from __future__ import annotations

import pytest

from bgtasks.connections import detect_transaction_pooler, resolve
from bgtasks.errors import ConfigError
from bgtasks.settings import load_settings
from tests.pgbouncer import pgbouncer, require_binary


def test_postgres_itself_is_no_transaction_pooler(database_url: str) -> None:
    assert detect_transaction_pooler(database_url) is False
    conns = resolve(load_settings(database_url=database_url))
    assert (conns.url, conns.direct, conns.prepare) == (database_url, database_url, True)


def test_pgbouncer_in_transaction_mode_is_found_and_in_session_mode_is_not(database_url: str) -> None:
    require_binary()
    with pgbouncer(database_url, "transaction") as pooled:
        assert all(detect_transaction_pooler(pooled) for _ in range(5))
        with pytest.raises(ConfigError) as refused:
            resolve(load_settings(database_url=pooled))
        assert "BGTASKS_DIRECT_DATABASE_URL" in str(refused.value) and "\n" not in str(refused.value)
        conns = resolve(load_settings(database_url=pooled, bgtasks_direct_database_url=database_url))
        assert (conns.url, conns.direct, conns.prepare) == (pooled, database_url, False)
        # The explicit setting wins over the probe.
        assert resolve(load_settings(database_url=pooled, bgtasks_pooler="none")).prepare is True
    with pgbouncer(database_url, "session") as session_pooled:
        assert detect_transaction_pooler(session_pooled) is False
    with pytest.raises(ConfigError):
        resolve(load_settings(database_url=database_url, bgtasks_pooler="transaction"))
