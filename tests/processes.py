"""Start and stop real bgtasks processes (workers, API servers) for tests, and read the test journal that
diagnostic actors append to (BGTASKS_TEST_JOURNAL)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BGTASKS = [sys.executable, "-m", "bgtasks.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail with a sentence saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)



def spawn(args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a process writing stdout and stderr to `log`; the child keeps its own descriptor, ours is
    closed at once (no file left open for the garbage collector)."""
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **kwargs)

class Proc:
    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout: float = 30) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited ({self.popen.returncode}) before printing {text!r}:\n"
                                     + self.output()[-3000:])
            return text in self.output()

        wait_until(seen, timeout, f"{text!r} in the process output")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


class Processes:
    """Every process a test starts; all are stopped when the test ends."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        self.tmp = tmp
        self.database_url = database_url
        self.journal = tmp / "journal.jsonl"
        self.procs: list[Proc] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "OPENAI_"))}
        env.update(DATABASE_URL=self.database_url, BGTASKS_TEST_JOURNAL=str(self.journal),
                   BGTASKS_LEASE_S="3", BGTASKS_HEARTBEAT_S="0.5", BGTASKS_REAP_INTERVAL_S="0.5",
                   BGTASKS_SHUTDOWN_GRACE_S="5", BGTASKS_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def start(self, args: list[str], ready: str | None, cwd: Path | None = None, **env: str) -> Proc:
        log = self.tmp / f"proc-{len(self.procs)}.log"
        popen = spawn([*BGTASKS, *args], log, env=self.env(**env), cwd=str(cwd or Path(__file__).parent.parent))
        proc = Proc(popen, log)
        self.procs.append(proc)
        if ready:
            proc.wait_for_line(ready)
        return proc

    def worker(self, concurrency: int = 4, **env: str) -> Proc:
        return self.start(["worker", "--concurrency", str(concurrency)], "ready", None, **env)

    def api(self, port: int | None = None, **env: str) -> tuple[Proc, str]:
        port = port or free_port()
        proc = self.start(["api", "--port", str(port)], None, None, **{"BGTASKS_DEV": "1", **env})  # dev unless told
        base = f"http://127.0.0.1:{port}"
        import httpx

        def up() -> bool:
            if proc.popen.poll() is not None:
                raise AssertionError("API process exited:\n" + proc.output()[-3000:])
            try:
                return httpx.get(base + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30, "the API's /healthz")
        return proc, base

    def journal_lines(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]

    def stop_all(self) -> None:
        for p in self.procs:
            p.stop(signal.SIGTERM, timeout=15)


def peak_concurrency(lines: list[dict[str, Any]]) -> int:
    """Most executions running at once, from the journal's start/end lines (ends sort before starts at a tie)."""
    events = sorted(((ln["t"], 1 if ln["event"] == "start" else -1) for ln in lines), key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


@contextmanager
def processes(tmp: Path, database_url: str) -> Iterator[Processes]:
    ps = Processes(tmp, database_url)
    try:
        yield ps
    finally:
        ps.stop_all()
