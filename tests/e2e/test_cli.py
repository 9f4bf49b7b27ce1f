"""The installed `bgtasks` command in a subprocess against running `bgtasks api` and `bgtasks worker`
processes: output for people, --json for scripts, and the exit codes scripts branch on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.processes import Processes, free_port

BGTASKS = str(Path(sys.executable).parent / "bgtasks")


@dataclass
class Service:
    base_url: str
    database_url: str
    procs: Processes

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BGTASKS_", "OPENAI_", "DATABASE_URL"))}
        env.update(BGTASKS_URL=self.base_url, DATABASE_URL=self.database_url)
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BGTASKS, *args], env=self.env(**env), capture_output=True, text=True,
                              timeout=timeout, cwd=self.procs.tmp)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([BGTASKS, *args], env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=self.procs.tmp)


@pytest.fixture
def service(procs: Processes, database_url: str) -> Iterator[Service]:
    assert Path(BGTASKS).exists(), "the project is installed in the venv (pip install .)"
    procs.worker(concurrency=2)
    _, base = procs.api(BGTASKS_LOG_JSON="1")
    yield Service(base, database_url, procs)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def test_submit_wait_ls_show(service: Service) -> None:
    result = service.run("submit", "sleep", "--payload", '{"seconds": 0.6, "steps": 3}', "--label", "cli run",
                         "--wait")
    out = _ok(result)
    task_id = out.splitlines()[0].strip()
    assert task_id.startswith("task_")
    assert "[" in out and "#" in out  # a progress bar: [##########----------]  33% processing: ...
    assert f"{task_id} completed" in out
    assert any(" 33%" in line or " 66%" in line for line in out.splitlines()), out

    listed = json.loads(_ok(service.run("ls", "--json", "--status", "completed", "--type", "sleep")))
    assert [t["id"] for t in listed] == [task_id]
    table = _ok(service.run("ls", "--status", "completed"))
    assert table.splitlines()[0].split()[:3] == ["ID", "TYPE", "STATUS"]
    assert task_id in table and "cli run" in table
    assert "(no tasks)" in _ok(service.run("ls", "--status", "error"))

    shown = json.loads(_ok(service.run("show", task_id, "--json")))
    assert shown["status"] == "completed" and shown["progress"] == 100 and shown["label"] == "cli run"
    text = _ok(service.run("show", task_id))
    assert "status" in text and "completed" in text


def test_watch_exit_codes_say_how_the_task_ended(service: Service) -> None:
    failing = _ok(service.run("submit", "flaky", "--payload", '{"failures": 5, "permanent": true}')).strip()
    watched = service.run("watch", failing)
    assert watched.returncode == 1, watched
    assert "failed" in watched.stdout

    long = _ok(service.run("submit", "sleep", "--payload", '{"seconds": 30}')).strip()
    watcher = service.popen("watch", long)
    assert watcher.stdout is not None
    assert watcher.stdout.readline()  # the first state: it is following
    assert watcher.poll() is None
    cancelled = _ok(service.run("cancel", long, "--reason", "not needed"))
    assert cancelled.split() == [long, "cancelled"]
    out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 4, (out, err)
    assert f"{long} cancelled: not needed" in out

    assert service.run("watch", "task_doesnotexist").returncode == 3


def test_watch_ends_with_exit_2_when_its_key_is_revoked(service: Service) -> None:
    key = _ok(service.run("keys", "create", "--user", "alice")).strip()
    long = _ok(service.run("submit", "sleep", "--payload", '{"seconds": 30}', BGTASKS_API_KEY=key)).strip()
    watcher = subprocess.Popen([BGTASKS, "watch", long], env=service.env(BGTASKS_API_KEY=key),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=service.procs.tmp)
    assert watcher.stdout is not None
    assert watcher.stdout.readline()  # the first state: it is following
    _ok(service.run("keys", "revoke", key))
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 2, (out, err)
    assert "revoked" in err and "failed" not in out


def test_cancel_retry_refusals_and_not_found(service: Service) -> None:
    done = _ok(service.run("submit", "noop", "--wait")).splitlines()[0]
    refused = service.run("cancel", done)
    assert refused.returncode == 4 and "completed" in refused.stderr
    assert service.run("retry", done).returncode == 4
    assert service.run("cancel", "task_nope").returncode == 3
    assert service.run("show", "task_nope").returncode == 3
    missing = service.run("schedules", "rm", "no-such-schedule")  # a database command: the same code
    assert missing.returncode == 3 and missing.stderr.strip() == "bgtasks: schedule 'no-such-schedule' not found"

    _ok(service.run("queue", "stop"))
    parked = _ok(service.run("submit", "noop")).strip()
    _ok(service.run("cancel", parked))
    assert service.run("watch", parked, "-q").returncode == 4
    retried = json.loads(_ok(service.run("retry", parked, "--json")))
    assert retried["status"] == "pending" and retried["retryCount"] == 0
    assert service.run("retry", parked).returncode == 4  # pending: nothing to retry
    _ok(service.run("queue", "start"))
    assert service.run("watch", parked, "-q").returncode == 0


def test_usage_errors_and_an_unreachable_service(service: Service) -> None:
    assert service.run("submit", "noop", "--payload", "[1, 2]").returncode == 2
    assert service.run("submit", "noop", "--payload", "{not json").returncode == 2
    bad_type = service.run("submit", "no-such-type")
    assert bad_type.returncode == 2 and "HTTP 4" in bad_type.stderr
    assert service.run("queue", "limit", "-3").returncode == 2
    assert service.run("frobnicate").returncode == 2  # argparse
    down = service.run("ls", BGTASKS_URL=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 5 and "cannot reach the service" in down.stderr
    assert service.run("ls", BGTASKS_URL="localhost:8000").returncode == 2


def test_output_into_a_closed_pipe_is_not_a_database_error(service: Service) -> None:
    """`bgtasks types | head -1`: the reader leaves early; the command ends quietly (141, as after SIGPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([BGTASKS, "types"], env=service.env(), stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=60, cwd=service.procs.tmp)
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert "cannot reach" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_queue_start_stop_status_limit(service: Service) -> None:
    _ok(service.run("queue", "stop"))
    status = json.loads(_ok(service.run("queue", "status", "--json")))
    assert status["queueSettings"]["isActive"] is False
    task = _ok(service.run("submit", "noop")).strip()
    time.sleep(0.5)
    assert json.loads(_ok(service.run("show", task, "--json")))["status"] == "pending"
    limited = json.loads(_ok(service.run("queue", "limit", "3", "--json")))
    assert limited["queueSettings"]["maxConcurrentTasks"] == 3
    _ok(service.run("queue", "start"))
    assert service.run("watch", task, "-q").returncode == 0
    text = _ok(service.run("queue", "status"))
    assert "queue:      running" in text and "limit:      3" in text
    unlimited = json.loads(_ok(service.run("queue", "limit", "none", "--json")))
    assert unlimited["queueSettings"]["maxConcurrentTasks"] is None
    assert "limit:      none (no limit)\n" in _ok(service.run("queue", "status"))


def test_cleanup_and_sql_work_on_the_database(service: Service) -> None:
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO background_tasks (task_type, user_id, status, completed_at) "
                     "SELECT 'noop', 'u', 'completed', now() - interval '9 days' FROM generate_series(1, 1500)")
    assert "would delete 1500 finished task(s) older than 7 day(s)" in _ok(
        service.run("cleanup", "--older-than", "7d", "--dry-run"))
    assert "deleted 1500 finished task(s)" in _ok(service.run("cleanup", "--older-than", "7d"))
    assert service.run("cleanup", "--older-than", "soon").returncode == 2

    out = _ok(service.run("sql", "--", "-A", "-t", "-c", "SELECT tasks FROM task_status_counts WHERE status = 'completed'"))
    assert out.strip() == "0"
    health = _ok(service.run("sql", "-c", "SELECT is_active, live_workers FROM queue_health"))
    assert "is_active" in health and "live_workers" in health


def test_metrics_and_json_logs(service: Service) -> None:
    assert service.run("submit", "noop", "--wait").returncode == 0
    resp = httpx.get(service.base_url + "/metrics", timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'bgtasks_tasks{status="completed",task_type="noop"} 1.0' in text
    assert "bgtasks_queue_active 1.0" in text and "bgtasks_workers_live 1.0" in text
    assert 'bgtasks_recent_run_duration_seconds_bucket{le="+Inf",status="completed",task_type="noop"} 1.0' in text
    assert 'bgtasks_recent_finished_tasks{status="completed",task_type="noop"} 1.0' in text
    api_log = service.procs.procs[1].output()
    lines = [ln for ln in api_log.splitlines() if ln.strip()]
    assert lines, "the API logged nothing"
    for line in lines:
        record = json.loads(line)  # BGTASKS_LOG_JSON=1: every line is one JSON object
        assert {"ts", "level", "logger", "msg"} <= set(record)
