"""What users install: the wheel built from this checkout, not the source tree. It carries every file a running
service reads and no top-level package but `bgtasks`; installed into a fresh virtual environment outside the
checkout, the README's `bgtasks up` serves, runs a task and leaves nothing running after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.processes import free_port, spawn, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The repository's layout -> where pyproject.toml's package-dir puts it in the wheel.
PACKAGE_DIRS = {"service": "bgtasks", "actors": "bgtasks/actors", "migrations": "bgtasks/migrations"}
# What a build must not see of a working tree: a stale build/ would put deleted modules into the wheel.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    "test-artifacts",
    ".bgtasks-data",
    "node_modules",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel` of a clean copy of the checkout (what `pip install .` builds), in a temporary directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    out = tmp / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (found,) = out.glob("bgtasks-*.whl")
    return found


def _shipped_sources() -> dict[str, str]:
    """Every file of the three source directories (code, SQL, static files, migration templates) -> its path
    in the wheel. Derived from the tree, so a new file or subpackage missing from pyproject.toml fails here."""
    files = {}
    for top, target in PACKAGE_DIRS.items():
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[str(path.relative_to(ROOT))] = f"{target}/{path.relative_to(ROOT / top).as_posix()}"
    return files


def test_wheel_ships_every_file_the_service_reads_and_only_the_bgtasks_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _shipped_sources()
    missing = sorted(src for src, target in expected.items() if target not in names)
    assert missing == [], f"in the tree but not in the wheel: {missing}"
    # The kinds of file the issue names, each present (not only "nothing missing" of an empty tree).
    for pattern in (
        r"bgtasks/migrations/versions/0001_schema\.sql",
        r"bgtasks/migrations/script\.py\.mako",
        r"bgtasks/sql/tasks\.sql",
        r"bgtasks/static/index\.html",
        r"bgtasks/py\.typed",
    ):
        assert any(re.fullmatch(pattern, n) for n in names), pattern
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"bgtasks", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    for stray in ("service", "actors", "migrations", "tests", "bench"):
        assert stray not in tops


@pytest.fixture(scope="module")
def user_dir() -> Iterator[Path]:
    """The new user's directory (their home and their venv), outside the checkout and outside pytest's
    temporary root: as root, PostgreSQL runs as an unprivileged user that must traverse the path to its
    binaries and data, and every pytest session that starts (any engineer's) makes that root 0700 again."""
    path = Path(tempfile.mkdtemp(prefix="bgtasks-user-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(wheel: Path, user_dir: Path) -> Path:
    """A fresh virtual environment outside the checkout with the wheel (and its dependencies) installed."""
    venv = user_dir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stdout + install.stderr[-3000:]
    return venv


def _user_env(home: Path) -> dict[str, str]:
    """A new user's shell: a home of their own and none of our settings (no DATABASE_URL, no BGTASKS_*)."""
    drop = ("BGTASKS_", "DATABASE_URL", "OPENAI_", "XDG_", "PYTHON", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["HOME"] = str(home)
    return env


def test_installed_wheel_provides_bgtasks_and_no_top_level_service(installed: Path, tmp_path: Path) -> None:
    python = str(installed / "bin" / "python")
    for name in ("service", "actors", "migrations"):
        run = subprocess.run(
            [python, "-c", f"import {name}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_user_env(tmp_path),
            timeout=60,
        )
        assert run.returncode == 1 and f"No module named '{name}'" in run.stderr, (name, run.stderr)
    run = subprocess.run(
        [
            python,
            "-c",
            "import bgtasks, bgtasks.actors, bgtasks.migrations, bgtasks.cli; print(bgtasks.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_user_env(tmp_path),
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()).is_relative_to(installed), run.stdout


def _family(root: psutil.Process, marker: str) -> set[psutil.Process]:
    """`root`'s descendants and every process whose command line names `marker` (the user's directory: the
    venv's python, PostgreSQL's -D), with theirs: pg_ctl detaches the postmaster from `up`."""
    found = set(root.children(recursive=True))
    for p in psutil.process_iter(["cmdline"]):
        if marker in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid():
            found.add(p)
            found.update(p.children(recursive=True))
    return found


def _lines(stream: Iterator[str]) -> Iterator[dict[str, object]]:
    for line in stream:
        if line.startswith("data:"):
            yield json.loads(line[5:])


def test_readme_first_command_from_the_wheel_serves_runs_a_task_and_stops_clean(
    installed: Path, user_dir: Path, tmp_path: Path
) -> None:
    home, port = user_dir / "home", free_port()
    home.mkdir()
    env = _user_env(home)
    bgtasks = str(installed / "bin" / "bgtasks")
    log = tmp_path / "up.log"
    up = spawn([bgtasks, "up", "--port", str(port)], log, env=env, cwd=home)
    base = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            assert up.poll() is None, f"bgtasks up exited ({up.returncode}):\n{log.read_text()[-3000:]}"
            return "serving on" in log.read_text()

        wait_until(serving, 180, "`bgtasks up` to print 'serving on'")
        banner = log.read_text()
        # The embedded database lives in the user's data directory, under their home.
        assert str(home) in banner, banner
        database = re.search(r"\(database (postgresql://\S+)\)", banner)
        assert database, banner
        # "serving on" comes only once the API answers.
        assert httpx.get(f"{base}/healthz", timeout=10).json() == {"status": "ok", "database": "ok"}

        # The README's tour: create a sleep task (dev mode on loopback: no key), follow it to its end.
        created = httpx.post(
            f"{base}/api/tasks", json={"taskType": "sleep", "payload": {"seconds": 0.5}}, timeout=30
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task"]["id"]
        kinds = []
        with httpx.stream(
            "GET",
            f"{base}/api/subscribeToTask",
            params={"taskId": task_id},
            timeout=httpx.Timeout(10, read=120),
        ) as stream:
            for message in _lines(stream.iter_lines()):
                kinds.append(message["type"])
                if message["type"] != "update":
                    break
        assert kinds[-1] == "complete", kinds
        assert httpx.get(f"{base}/api/tasks/{task_id}", timeout=10).json()["task"]["status"] == "completed"

        # A second terminal, no setting: the commands find the database of `bgtasks up`.
        sql = subprocess.run(
            [bgtasks, "sql", "-c", f"SELECT status FROM background_tasks WHERE id = '{task_id}'"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sql.returncode == 0 and "completed" in sql.stdout, sql.stdout + sql.stderr
        key = subprocess.run(
            [bgtasks, "keys", "create", "--user", "alice"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert key.returncode == 0 and key.stdout.strip().startswith("bgt_"), key.stdout + key.stderr
        missing = subprocess.run(
            [bgtasks, "schedules", "rm", "no-such-schedule"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Exit 3, the not-found code: one line after the one saying which database it used.
        assert missing.returncode == 3 and "Traceback" not in missing.stderr, missing.stderr
        assert missing.stderr.strip().splitlines() == [
            sql.stderr.strip(),
            "bgtasks: schedule 'no-such-schedule' not found",
        ], missing.stderr

        # The API reference: its page, the renderer's files (a dependency's package data) and ours, served.
        docs = httpx.get(f"{base}/docs", timeout=10)
        assert docs.status_code == 200 and "text/html" in docs.headers["content-type"], docs.text[:300]
        assets = re.findall(r'(?:src|href)="(/(?:static|docs/assets)/[^"]+)"', docs.text)
        assert "/docs/assets/swagger-ui-bundle.js" in assets and "/static/docs.js" in assets, assets
        for asset in assets:
            assert httpx.get(base + asset, timeout=10).status_code == 200, asset

        family = _family(psutil.Process(up.pid), str(user_dir))
        names = {p.name() for p in family}
        assert any("postgres" in n for n in names), names
        assert sum("bgtasks" in " ".join(p.cmdline()) for p in family) >= 2, "api and worker not found"

        up.send_signal(signal.SIGINT)
        assert up.wait(90) == 0, log.read_text()[-3000:]
        _, alive = psutil.wait_procs(list(family), timeout=20)
        assert alive == [], [p.cmdline() for p in alive]
        left = [
            p.info["cmdline"]
            for p in psutil.process_iter(["cmdline"])
            if str(user_dir) in " ".join(p.info["cmdline"] or [])
        ]
        assert left == [], left
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

    # The database stopped: one line each, no traceback; "unreachable" (5) is not "behind" (1) nor "ok" (0).
    stopped = {**env, "DATABASE_URL": database.group(1)}
    for argv in (["keys", "ls"], ["migrate", "--check"]):
        run = subprocess.run(
            [bgtasks, *argv], env=stopped, cwd=home, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 5, (argv, run.returncode, run.stderr)
        assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
        assert "cannot reach the database" in run.stderr, run.stderr
