"""The example application (examples/myapp) for real: its worker (`--app myapp.tasks`), the bgtasks API, and
its own Starlette app under uvicorn, which enqueues in its own transaction and reads back with AsyncClient.
And it type-checks strictly against what `bgtasks` exports."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.processes import Processes, free_port, spawn, wait_until
from tests.rows import one

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_the_example_web_app_enqueues_in_its_transaction_and_reads_the_result(
        procs: Processes, sql: psycopg.Connection[Any]) -> None:
    procs.start(["worker", "--app", "myapp.tasks", "--concurrency", "2"], "ready", cwd=EXAMPLES)
    _, base = procs.api()
    port = free_port()
    log = procs.tmp / "web.log"
    web = spawn([sys.executable, "-m", "uvicorn", "myapp.web:app", "--port", str(port)], log, cwd=EXAMPLES,
                env=procs.env(BGTASKS_URL=base))
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert web.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.post(f"{url}/summaries", json={"text": ""}, timeout=2).status_code == 422
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the example web app")
        bad = httpx.post(f"{url}/summaries", json={"text": ""}, timeout=10)
        assert bad.json()["field"] == "payload.text"
        assert one(sql, "SELECT count(*) AS n FROM myapp_summaries")["n"] == 0
        made = httpx.post(f"{url}/summaries", json={"title": "t", "text": "Once upon a time."}, timeout=10)
        assert made.status_code == 201, made.text
        task_id = made.json()["taskId"]
        row = one(sql, "SELECT task_id FROM myapp_summaries WHERE id = %s", (made.json()["id"],))
        assert row["task_id"] == task_id
        done = httpx.get(f"{url}/summaries/{task_id}", params={"wait": "30"}, timeout=60).json()
        assert done == {"taskId": task_id, "status": "completed", "progress": 100, "summary": "Once upon a time."}
    finally:
        web.terminate()
        web.wait(15)


def _bgtasks_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "bgtasks"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "bgtasks":
            names.append(f"from {node.module}")
    return names


def test_the_example_imports_only_bgtasks_itself_and_type_checks_strictly(tmp_path: Path) -> None:
    for path in (EXAMPLES / "myapp").glob("*.py"):
        assert set(_bgtasks_imports(path)) <= {"bgtasks"}, path
    if not shutil.which("mypy", path=str(Path(sys.executable).parent)):
        pytest.skip("mypy is in the test extra")
    # One run over the example and a file that must fail: a wrong call and a name bgtasks does not export.
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import bgtasks\n\n\n"
                     "def f(client: bgtasks.Client) -> int:\n"
                     "    bgtasks.TaskContext\n"
                     "    return client.get(42).progress\n")
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(EXAMPLES / "mypy.ini"), "myapp",
                          str(wrong)], cwd=EXAMPLES, capture_output=True, text=True, timeout=300)
    errors = [line for line in run.stdout.splitlines() if ": error:" in line]
    assert errors and all(wrong.name in line.split(":")[0] for line in errors), run.stdout[-3000:] + run.stderr
    assert 'has no attribute "TaskContext"' in run.stdout and 'incompatible type "int"' in run.stdout
