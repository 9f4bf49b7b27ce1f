"""Issue 17's acceptance, from outside: real `bgtasks api` and `bgtasks worker` processes, driven over HTTP only,
against a misbehaving OpenAI-compatible server running as a program of its own
(`python -m tests.fakes.openai_server`): a 5 MB answer, a trickling answer, a burst of 429s, a project with
secrets in its files, a 25,000-file project, and a page of 50 tasks with large results."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_actors_project import PLANTED, SECRET_VALUES
from tests.processes import Processes, wait_until

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 5  # the slow scenario answers after 2.5 s


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "model-requests.jsonl"
    out = tmp_path / "model-server.out"
    routes = ["MARK-HUGE=huge", "MARK-TRICKLE=trickle", "MARK-BURST=burst429", "MARK-BIG=big", "MARK-MONO=slow"]
    with out.open("wb") as sink:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", "--log", str(log), *routes],
                                cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        line = wait_until(lambda: next((ln for ln in out.read_text().splitlines() if "listening on" in ln), None),
                          30, "the model server to listen")
        yield line.split("listening on ", 1)[1].strip(), log
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _project(root: Path, name: str, files: dict[str, str]) -> str:
    for rel, text in files.items():
        (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / name / rel).write_text(text)
    return str(root / name)


def test_the_issue_17_cases_end_as_promised_against_a_misbehaving_model_server(
        procs: Processes, model_server: tuple[str, Path], tmp_path: Path) -> None:
    base_url, request_log = model_server
    roots = tmp_path / "projects"
    monorepo = roots / "monorepo"
    for p in range(250):  # 25,000 files in 250 top-level packages
        for sub in ("core", "util"):
            d = monorepo / f"pkg{p:03d}" / sub
            d.mkdir(parents=True)
            for i in range(50):
                (d / f"mod{i:02d}.py").write_text("def handler(event):\n    return event\n")
    (monorepo / "README.md").write_text("# MARK-MONO\n")
    (monorepo / "measurements.csv").write_text("t,value\n" + "1700000000,0.5\n" * 29_000)  # 440 KB of data
    projects = {
        "huge": _project(roots, "huge", {"README.md": "# MARK-HUGE\n"}),
        "secrets": _project(roots, "secrets", {"README.md": "# Shop\n", **PLANTED}),
        "big": _project(roots, "big", {"README.md": "# MARK-BIG\n"}),
        "monorepo": str(monorepo),
    }
    env = {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test-key", "BGTASKS_MODEL": "fake-model",
           "BGTASKS_PROJECT_ROOTS": str(roots), "BGTASKS_MODEL_TIMEOUT_S": str(TIMEOUT_S)}
    _, api = procs.api(None, **env)
    procs.worker(concurrency=4, **env)

    with httpx.Client(base_url=api, timeout=30) as http:
        def create(task_type: str, **fields: Any) -> str:
            r = http.post("/api/tasks", json={"taskType": task_type, **fields})
            assert r.status_code == 201, r.text
            return str(r.json()["task"]["id"])

        def project(name: str, task_type: str = "docs") -> str:
            return create(task_type, projectId=name, projectName=name, projectPath=projects[name], maxRetries=0)

        ids = {
            "huge": project("huge"),
            "trickle": create("generation", payload={"amount": 2, "category": "MARK-TRICKLE"}, maxRetries=0),
            "burst": create("generation", payload={"amount": 2, "category": "MARK-BURST"}, maxRetries=0),
            "secrets": project("secrets"),
            "monorepo": project("monorepo", "tasks"),
        }
        big = [project("big") for _ in range(50)]

        # While the 25,000-file project's model call runs, its progress text states the scan cap.
        def calling() -> str | None:
            description = http.get(f"/api/tasks/{ids['monorepo']}").json()["task"]["description"] or ""
            return description if description.startswith("Calling the model") else None

        described = wait_until(calling, 120, "the 25,000-file task to report its model call")
        assert "(stopped scanning at 20,000 files: the project is larger)" in described, described

        def final(task_id: str) -> dict[str, Any] | None:
            task = http.get(f"/api/tasks/{task_id}").json()["task"]
            return task if task["status"] in ("completed", "error", "cancelled") else None

        tasks = {name: wait_until(functools.partial(final, i), 120, f"the {name} task to finish")
                 for name, i in ids.items()}
        for task_id in big:
            assert wait_until(functools.partial(final, task_id), 120, "the large-result tasks")["status"] == "completed"

        # A 5 MB answer: a clear message, nothing stored, no retry.
        huge = tasks["huge"]
        assert huge["status"] == "error" and huge["resultData"] is None
        assert "was 5,000,000 characters, over the cap of 1,000,000" in huge["errorMessage"]

        # A trickling server: the call ends at the total deadline, with a message naming it.
        trickled = tasks["trickle"]
        assert trickled["status"] == "error"
        assert f"did not answer within {TIMEOUT_S}s (BGTASKS_MODEL_TIMEOUT_S" in trickled["errorMessage"]
        attempt = http.get(f"/api/tasks/{ids['trickle']}").json()["attempts"][0]
        ran = _seconds(attempt["failedAt"]) - _seconds(attempt["startedAt"])
        assert ran < TIMEOUT_S + 6, f"the trickled attempt ran {ran:.1f}s against a {TIMEOUT_S}s deadline"

        # A burst of 429s: waited out, completed, no retry spent (maxRetries 0 would have failed it).
        burst = tasks["burst"]
        assert burst["status"] == "completed" and burst["retryCount"] == 0, burst["errorMessage"]
        outcomes = [a["outcome"] for a in http.get(f"/api/tasks/{ids['burst']}").json()["attempts"]]
        assert outcomes == ["rate_limited"] * 5

        # Secrets in file contents never reach the provider; the result names what was withheld.
        assert tasks["secrets"]["status"] == "completed", tasks["secrets"]["errorMessage"]
        sent = request_log.read_text()
        assert [v for v in SECRET_VALUES if v in sent] == []
        withheld = {w["path"] for w in tasks["secrets"]["resultData"]["source"]["withheld"]}
        assert set(PLANTED) <= withheld

        # 25,000 files: every top-level package in the selection, and the cap stated.
        mono = tasks["monorepo"]
        assert mono["status"] == "completed", mono["errorMessage"]
        source = mono["resultData"]["source"]
        assert source["scanLimitReached"] is True and source["scanLimit"] == 20_000
        assert len(source["directories"]) == 250 and all(d["filesRead"] >= 1 for d in source["directories"])
        assert all(70 <= d["filesSeen"] <= 90 for d in source["directories"]), "the cap cuts every package alike"
        read = source["files"]
        assert read[0] == "README.md"
        if "measurements.csv" in read:  # read last, if at all: a large data file never outranks source
            assert read.index("measurements.csv") > max(read.index(f) for f in read if f.endswith(".py"))
        [prompt] = [json.loads(line)["messages"][-1]["content"] for line in sent.splitlines() if "MARK-MONO" in line]
        assert "the project has more files: scanning stopped at 20,000" in prompt
        assert "Files not shown (over the budget): " in prompt
        assert re.search(r"Files shown per top-level directory: pkg000/ \d+ of \d+;.*; pkg249/ \d+ of \d+", prompt)

        # A page of 50 tasks whose results are ~200 KB each stays under 100 KB.
        page = http.get("/api/tasks", params={"limit": 50, "projectId": "big"})
        assert page.status_code == 200 and len(page.json()["tasks"]) == 50
        assert len(page.content) < 100_000, f"a page of 50 was {len(page.content):,} bytes"
        assert all(t["resultTruncated"] for t in page.json()["tasks"])
        whole = http.get(f"/api/tasks/{big[0]}").json()["task"]
        assert len(json.dumps(whole["resultData"])) > 190_000


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() if iso else time.time()
