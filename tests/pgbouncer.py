"""Debian's pgbouncer, started by a test in front of the test PostgreSQL: a temporary directory, a free port,
auth_type trust, and the pool mode the test asks for. Tests skip (with the reason) when it is not installed
(`apt-get install pgbouncer`; CI does, .ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.processes import free_port


def binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)


def require_binary() -> str:
    found = binary()
    if found is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    return found


@contextmanager
def pgbouncer(server_url: str, pool_mode: str = "transaction", pool_size: int = 20) -> Iterator[str]:
    """Run pgbouncer in front of the server of `server_url`; yields the same URL through pgbouncer (every
    database of that server is reachable under its own name)."""
    exe = require_binary()
    parts = urlsplit(server_url)
    port = free_port()
    # Not under pytest's tmp_path: pgbouncer drops root for an unprivileged user, who cannot enter it.
    folder = Path(tempfile.mkdtemp(prefix="bgtasks-pgbouncer-"))
    folder.chmod(0o755)
    ini = folder / "pgbouncer.ini"
    (folder / "userlist.txt").write_text(f'"{parts.username or "postgres"}" ""\n')
    ini.write_text(
        "[databases]\n"
        f"* = host={parts.hostname} port={parts.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 1000\n"
        # A restart of the test server must not leave pgbouncer waiting on dead server connections.
        "server_check_delay = 0\nserver_login_retry = 1\n"
    )
    for f in folder.iterdir():
        f.chmod(0o644)
    user = ["-u", "nobody"] if os.geteuid() == 0 else []  # pgbouncer refuses to run as root
    with (folder / "pgbouncer.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([exe, *user, str(ini)], stdout=log, stderr=subprocess.STDOUT)
    url = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}"))
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError("pgbouncer exited at start:\n" + (folder / "pgbouncer.log").read_text())
            try:
                with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise AssertionError("pgbouncer did not accept connections within 20 s:\n"
                                         + (folder / "pgbouncer.log").read_text()) from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
