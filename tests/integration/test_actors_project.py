"""Seed one's per-project actors (docs, tasks, goals, context, code) in real worker processes against the
local OpenAI-compatible server: structured results, what is read and what never is, paths that escape their
root, and a 10,000-file project within the budget."""

from __future__ import annotations

import importlib
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bgtasks.actors._project import PROJECT_BUDGET_CHARS
from bgtasks.actors.model import schema_problems, wire_schema
from bgtasks.actors.project_files import collect_project_files
from tests.fakes.openai_server import FakeOpenAI, answer
from tests.integration.ai_support import ai_worker, insert_task, model_calls, wait_final
from tests.processes import Processes

PROJECT_TYPES = {"docs": "docs", "tasks": "tasks", "goals": "goals", "context": "context", "code": "code"}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "projects"
    root.mkdir()
    return root


def make_project(root: Path) -> Path:
    p = root / "shop"
    files = {
        "README.md": "# Shop\nA tiny shop service. MARKER-README\n",
        "pyproject.toml": "[project]\nname = 'shop'\n",
        "src/shop/app.py": "def total(items):\n    return sum(i.price for i in items)  # MARKER-APP\n",
        ".gitignore": "generated/\n*.log\n",
        "generated/big.py": "LEAK-GITIGNORED-DIR = 1\n",
        "debug.log": "LEAK-GITIGNORED-FILE\n",
        ".git/config": "[core] LEAK-GIT\n",
        "node_modules/left-pad/index.js": "LEAK-NODE-MODULES\n",
        "env/pyvenv.cfg": "home = /usr\n",
        "env/lib/site.py": "LEAK-VIRTUALENV\n",
        ".env": "OPENAI_API_KEY=LEAK-SECRET\n",
    }
    for rel, text in files.items():
        (p / rel).parent.mkdir(parents=True, exist_ok=True)
        (p / rel).write_text(text)
    (p / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0LEAK-BINARY")
    return p


def project_task(sql: psycopg.Connection[Any], task_type: str, path: Path | str, **payload: Any) -> str:
    return insert_task(sql, task_type, payload, project_id="shop-1", project_name="Shop",
                       project_path=str(path))


def test_every_project_type_completes_with_a_result_matching_its_schema(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, roots: Path) -> None:
    project = make_project(roots)
    ai_worker(procs, fake, roots)
    ids = {t: project_task(sql, t, project, instructions=f"focus on billing ({t})") for t in PROJECT_TYPES}
    rows = wait_final(sql, list(ids.values()))

    assert len(fake.requests) == len(PROJECT_TYPES)
    for task_type, task_id in ids.items():
        row = rows[task_id]
        assert row["status"] == "completed", (task_type, row["error_message"])
        assert row["progress"] == 100 and row["description"] == "Saving"
        module = importlib.import_module(f"bgtasks.actors.{PROJECT_TYPES[task_type]}")
        result = row["result_data"]
        assert schema_problems(result, module.RESULT_SCHEMA) == [], task_type
        source = result["source"]
        assert source["projectId"] == "shop-1" and source["projectPath"] == str(project.resolve())
        assert sorted(source["files"]) == [".gitignore", "README.md", "pyproject.toml", "src/shop/app.py"]
        assert source["filesRead"] == 4 and source["promptChars"] <= PROJECT_BUDGET_CHARS

        [request] = [r for r in fake.requests if f"({task_type})" in r.messages[-1]["content"]]
        assert request.response_format is not None and request.response_format["type"] == "json_schema"
        assert request.response_format["json_schema"]["strict"] is True
        assert request.response_format["json_schema"]["name"] == module.SCHEMA_NAME
        assert request.schema == wire_schema(module.ANSWER_SCHEMA)
        prompt = request.messages[-1]["content"]
        assert "MARKER-README" in prompt and "MARKER-APP" in prompt and "Project: Shop" in prompt
        assert "LEAK" not in prompt, [line for line in prompt.splitlines() if "LEAK" in line]
        assert request.headers["authorization"] == "Bearer test-key"

        [call] = model_calls(sql, task_id)
        assert call["model"] == "fake-model" and call["user_id"] == "tester" and call["task_type"] == task_type
        assert call["prompt_tokens"] > 0 and call["completion_tokens"] > 0 and call["duration_ms"] >= 0
        assert (row["prompt_tokens"], row["completion_tokens"]) == (call["prompt_tokens"],
                                                                    call["completion_tokens"])


def test_a_project_path_that_escapes_its_root_is_refused_without_calling_the_model(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, roots: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "README.md").write_text("# not yours\n")
    make_project(roots)
    (roots / "sneaky").symlink_to(outside, target_is_directory=True)
    ai_worker(procs, fake, roots)
    escapes = {
        "dotdot": project_task(sql, "docs", f"{roots}/shop/../../elsewhere"),
        "symlink": project_task(sql, "tasks", roots / "sneaky"),
        "absolute": project_task(sql, "goals", outside),
        "relative": project_task(sql, "code", "shop"),
    }
    missing = project_task(sql, "context", roots / "no-such-project")
    rows = wait_final(sql, [*escapes.values(), missing])

    for how, task_id in escapes.items():
        row = rows[task_id]
        assert row["status"] == "error" and row["retry_count"] == 0, (how, row["status"], row["retry_count"])
        expected = "is relative" if how == "relative" else "is outside the allowed project roots"
        assert expected in row["error_message"], (how, row["error_message"])
        assert str(outside) not in row["error_message"] or how == "absolute"
    assert "does not exist" in rows[missing]["error_message"]
    assert fake.requests == [], "a refused project must never reach the model"


def write_tree(root: Path, n_files: int, size: int) -> None:
    body = ("x = 1  # filler line of a generated module\n" * (size // 44 + 1))[:size]
    for i in range(n_files):
        d = root / f"pkg{i // 500:02d}" / f"sub{(i // 50) % 10}"
        if i % 50 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i:05d}.py").write_text(body)
    (root / "README.md").write_text("# Big\nMARKER-BIG-README\n")


def test_a_ten_thousand_file_project_is_read_within_the_budget_without_loading_it_all(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, roots: Path) -> None:
    big = roots / "big"
    write_tree(big, 10_000, 2_000)  # 20 MB of source, a hundred times the prompt budget

    tracemalloc.start()
    try:
        snapshot = collect_project_files(big, budget_chars=PROJECT_BUDGET_CHARS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert snapshot.total_files_seen == 10_001
    assert snapshot.content_chars <= PROJECT_BUDGET_CHARS
    assert peak < 8 * PROJECT_BUDGET_CHARS, f"reading used {peak / 1e6:.1f} MB at its peak"

    ai_worker(procs, fake, roots)
    task_id = project_task(sql, "docs", big)
    row = wait_final(sql, [task_id])[task_id]
    assert row["status"] == "completed", row["error_message"]
    source = row["result_data"]["source"]
    assert source["filesSeen"] == 10_001 and 0 < source["filesRead"] < 200
    assert source["files"][0] == "README.md"
    [request] = fake.requests
    prompt = request.messages[-1]["content"]
    assert "MARKER-BIG-README" in prompt
    assert len(prompt) < PROJECT_BUDGET_CHARS + 40_000  # the files, plus the tree and the instructions


def test_a_project_that_changed_into_an_escape_after_creation_is_refused_at_run_time(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, roots: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret-place"
    outside.mkdir()
    (outside / "README.md").write_text("LEAK\n")
    sql.execute("UPDATE task_queue_settings SET is_active = false")
    ai_worker(procs, fake, roots)
    (roots / "was-fine").mkdir()
    task_id = project_task(sql, "docs", roots / "was-fine")  # accepted at creation: a real directory
    (roots / "was-fine").rmdir()
    (roots / "was-fine").symlink_to(outside, target_is_directory=True)  # now it points out
    sql.execute("UPDATE task_queue_settings SET is_active = true")
    row = wait_final(sql, [task_id])[task_id]
    assert row["status"] == "error" and "outside the allowed project roots" in row["error_message"]
    assert fake.requests == []


# Secret values planted in a project: none may reach the model provider, whatever the file is called.
PLANTED = {
    "credentials.json": (
        '{\n  "type": "service_account",\n  "project_id": "shop-prod",\n'
        '  "private_key_id": "8f3c1a9d2b7e4f6a0c5d8e1b3a7f9c2d4e6b8a0c",\n'
        '  "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\\n'
        '-----END PRIVATE KEY-----\\n",\n  "client_email": "deploy@shop-prod.iam.gserviceaccount.com"\n}\n'),
    "config/secrets.yaml": (
        "database:\n  password: Zx9qL2mV8rT4wY7uQ1\n"
        "tls_key: |\n  -----BEGIN RSA PRIVATE KEY-----\n"
        "  MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
        "  VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
        "  -----END RSA PRIVATE KEY-----\n"),
    ".env.example": (
        "OPENAI_API_KEY=sk-proj-Tq8vX2mN5bR7kL9wZ3cY6hJ4\n"
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8LMKEY\n"
        "STRIPE_TOKEN=rk_live_51HqLyjWDarjtT1zdp7dcbv0dhgtAuHcr\n"),
    "deploy/service-account.json": (
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvgIBADANBgkqhkiG9w0BAQEF'
        'AASCBKgwggSkAgEAAoIBAQDZ\\n-----END PRIVATE KEY-----\\n", "token": "ya29.a0AfH6SMBx3kq9YwZlPq7"}\n'),
}
SECRET_VALUES = [
    "8f3c1a9d2b7e4f6a0c5d8e1b3a7f9c2d4e6b8a0c", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
    "Zx9qL2mV8rT4wY7uQ1", "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK", "sk-proj-Tq8vX2mN5bR7kL9wZ3cY6hJ4",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8LMKEY", "rk_live_51HqLyjWDarjtT1zdp7dcbv0dhgtAuHcr",
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDZ", "ya29.a0AfH6SMBx3kq9YwZlPq7",
]


def test_secrets_in_file_contents_never_reach_the_model_and_the_result_names_what_was_withheld(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, roots: Path) -> None:
    project = make_project(roots)
    for rel, text in PLANTED.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    (project / "src/shop/settings.py").write_text("DEBUG = False\nTIMEOUT_S = 30  # MARKER-SETTINGS\n")
    ai_worker(procs, fake, roots)
    task_id = project_task(sql, "docs", project)
    row = wait_final(sql, [task_id])[task_id]
    assert row["status"] == "completed", row["error_message"]

    sent = "\n".join(json.dumps(r.body) for r in fake.requests)
    assert "MARKER-SETTINGS" in sent and "MARKER-README" in sent, "ordinary files are still sent"
    leaked = [value for value in SECRET_VALUES if value in sent]
    assert leaked == [], f"sent to the provider: {leaked}"

    source = row["result_data"]["source"]
    withheld = {w["path"]: w["reason"] for w in source["withheld"]}
    assert set(withheld) == {*PLANTED, ".env"}, withheld
    assert withheld[".env"] == "secret file name"
    assert "Private Key" in withheld["credentials.json"] and "Private Key" in withheld["config/secrets.yaml"]
    assert source["withheldCount"] == 5
    assert not set(withheld) & set(source["files"])
    assert not any(value in json.dumps(row["result_data"]) for value in SECRET_VALUES)


def test_paths_the_model_names_that_are_not_in_the_project_are_flagged(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI, roots: Path) -> None:
    project = make_project(roots)
    task = {"title": "Cache totals", "file": "src/shop/app.py", "kind": "performance", "priority": "high",
            "description": "d", "suggestion": "s"}
    fake.script(answer({"summary": "s", "tasks": [
        task, {**task, "file": "src/shop/imagined.py"}, {**task, "file": "../../etc/passwd"},
        {**task, "file": "src/shop/imagined.py"}]}))
    ai_worker(procs, fake, roots)
    task_id = project_task(sql, "code", project)
    row = wait_final(sql, [task_id])[task_id]
    assert row["status"] == "completed", row["error_message"]
    assert row["result_data"]["source"]["missingPaths"] == ["src/shop/imagined.py", "../../etc/passwd"]
    module = importlib.import_module("bgtasks.actors.code")
    assert schema_problems(row["result_data"], module.RESULT_SCHEMA) == []
