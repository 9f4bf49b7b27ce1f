"""`bgtasks up` as a new user runs it: embedded PostgreSQL, API and worker; Ctrl-C leaves nothing behind
and the next `up` finds the tasks where they were."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from tests.processes import free_port, spawn, wait_until


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "DATABASE_URL", "OPENAI_"))}
    env["BGTASKS_SHUTDOWN_GRACE_S"] = "2"
    return spawn([sys.executable, "-m", "bgtasks.cli", "up", "--port", str(port), "--data-dir", str(data_dir)],
                 log, env=env)


def _descendants_and_postgres(proc: subprocess.Popen[bytes], data_dir: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(data_dir) in cmd or ("bgtasks.cli" in cmd and str(proc.pid) in str(p.ppid())):
            found.append(p)
    try:
        found += psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    return found


def _wait_published(url: str, task_type: str, worker: subprocess.Popen[bytes], log: Path) -> None:
    def found() -> bool:
        assert worker.poll() is None, log.read_text()
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute("SELECT 1 FROM task_types WHERE name = %s", (task_type,)).fetchone() is not None

    wait_until(found, 60, f"a worker to publish {task_type}")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's temporary root, which every starting pytest session makes 0700 again: as root, the
    embedded PostgreSQL runs as an unprivileged user that must reach its data directory."""
    path = Path(tempfile.mkdtemp(prefix="bgtasks-up-"))
    try:
        yield path / "data"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_up_serves_healthz_and_sigint_leaves_no_process(tmp_path: Path, data_dir: Path) -> None:
    port, log = free_port(), tmp_path / "up.log"
    proc = _start(data_dir, port, log)
    try:
        wait_until(lambda: "serving on" in log.read_text(), 60, "the banner of `bgtasks up`")
        text = log.read_text()
        assert "development mode" in text and "local superuser" in text

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, "/healthz to answer 200")
        url = re.search(r"database (postgresql://\S+)\)", text)
        assert url, text
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "DATABASE_URL"))}
        found = subprocess.run([sys.executable, "-m", "bgtasks.cli", "keys", "ls"], capture_output=True, text=True,
                               env={**clean, "BGTASKS_DATA_DIR": str(data_dir)}, timeout=60)
        assert found.returncode == 0 and "using the database of `bgtasks up`" in found.stderr, found.stderr
        # docs/adding-a-task-type.md: in a second shell, a worker over the user's own module joins that database
        project = tmp_path / "myapp-project"
        (project / "myapp").mkdir(parents=True)
        (project / "myapp" / "tasks.py").write_text(
            "import bgtasks\n\n"
            "@bgtasks.task_type('shout', description='Shout a text')\n"
            "def shout(task: bgtasks.Task, payload: dict) -> dict:\n"
            "    return {'text': str(payload.get('text', '')).upper()}\n")
        worker_log = tmp_path / "worker.log"
        worker = spawn([sys.executable, "-m", "bgtasks.cli", "worker", "--app", "myapp.tasks"], worker_log,
                       cwd=project, env={**clean, "BGTASKS_DATA_DIR": str(data_dir)})
        try:
            _wait_published(url.group(1), "shout", worker, worker_log)
            created = httpx.post(f"http://127.0.0.1:{port}/api/tasks",
                                 json={"taskType": "shout", "payload": {"text": "hi"}}, timeout=30)
            assert created.status_code == 201, created.text
            task_id = created.json()["task"]["id"]

            def done() -> bool:
                got = httpx.get(f"http://127.0.0.1:{port}/api/tasks/{task_id}", timeout=5).json()["task"]
                return bool(got["status"] == "completed" and got["result"] == {"text": "HI"})

            wait_until(done, 60, "the user's task to complete")
            # A task that fails by design: one line on the `up` console, its traceback kept with the attempt.
            failing = httpx.post(f"http://127.0.0.1:{port}/api/tasks", timeout=30, json={
                "taskType": "flaky", "maxRetries": 0,
                "payload": {"failures": 1, "permanent": True, "message": "broken on purpose"}}).json()["task"]["id"]

            def failed() -> Any:
                got = httpx.get(f"http://127.0.0.1:{port}/api/tasks/{failing}", timeout=5).json()
                return got if got["task"]["status"] == "error" else None

            detail = wait_until(failed, 60, "the failing task to end in error")
            assert detail["attempts"][0]["traceback"].startswith("Traceback (most recent call last):")
            # `up`'s own worker or the second one (it serves the built-in types too) ran it: one line on the
            # console of whichever did, none on the other, and no traceback on either.
            def console_lines() -> list[str]:
                return [ln for f in (log, worker_log) for ln in f.read_text().splitlines() if failing in ln]

            console = wait_until(console_lines, 30, "the failure's line on a console")
            assert len(console) == 1 and "PermanentTaskError: broken on purpose" in console[0], console
            assert "Traceback" not in log.read_text() and "Traceback" not in worker_log.read_text()
            assert "using the database of `bgtasks up`" in worker_log.read_text()
        finally:
            worker.terminate()
            worker.wait(60)
        children = _descendants_and_postgres(proc, data_dir)
        assert any("postgres" in (c.name() or "") for c in children), "no embedded postgres found"
        with psycopg.connect(url.group(1), autocommit=True) as conn:
            conn.execute("UPDATE task_queue_settings SET is_active = false")
            conn.execute("INSERT INTO background_tasks (id, task_type, user_id) VALUES ('kept', 'noop', 'me')")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(60)

    log2 = tmp_path / "up2.log"
    again = _start(data_dir, port, log2)
    try:
        wait_until(lambda: "serving on" in log2.read_text(), 60, "the second `bgtasks up`")
        url2 = re.search(r"database (postgresql://\S+)\)", log2.read_text())
        assert url2
        with psycopg.connect(url2.group(1), autocommit=True) as conn:
            row = conn.execute("SELECT status FROM background_tasks WHERE id = 'kept'").fetchone()
        assert row == ("pending",)
    finally:
        again.send_signal(signal.SIGINT)
        try:
            again.wait(60)
        finally:
            if again.poll() is None:
                again.kill()
                again.wait(60)


def test_invalid_settings_fail_at_start_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "DATABASE_URL"))}
    env["BGTASKS_PORT"] = "not-a-port"
    run = subprocess.run([sys.executable, "-m", "bgtasks.cli", "up"], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "BGTASKS_PORT" in run.stderr, run.stderr


def test_busy_port_is_one_line_naming_it_and_no_banner(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "DATABASE_URL"))}
        run = subprocess.run([sys.executable, "-m", "bgtasks.cli", "up", "--port", str(port), "--data-dir",
                              str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "serving on" not in run.stdout
    assert run.stderr.strip().count("\n") == 0 and str(port) in run.stderr and "--port" in run.stderr, run.stderr


def test_database_down_is_one_line_and_distinct_codes(tmp_path: Path) -> None:
    from tests.processes import free_port as port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "DATABASE_URL"))}
    env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{port()}/bgtasks"
    codes = set()
    for argv in (["keys", "ls"], ["migrate", "--check"], ["schedules", "ls"]):
        run = subprocess.run([sys.executable, "-m", "bgtasks.cli", *argv], env=env, capture_output=True,
                             text=True, timeout=60)
        assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
        codes.add(run.returncode)
    assert codes == {5}
    env.pop("DATABASE_URL")
    env["BGTASKS_DATA_DIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-m", "bgtasks.cli", "keys", "ls"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "DATABASE_URL" in run.stderr, run.stderr
