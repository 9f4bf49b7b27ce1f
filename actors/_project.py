"""What the five per-project actors share: find the project under the configured roots (again at run time:
the tree may have changed since the task was created), read it within the prompt budget, write the prompt,
and describe what was read next to the model's answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bgtasks.actors._schema import Schema, array, check_payload, integer, obj, string
from bgtasks.actors.errors import ProjectPathError
from bgtasks.actors.project_files import ProjectSnapshot, collect_project_files, resolve_project_path
from bgtasks.errors import PermanentTaskError
from bgtasks.settings import LOCAL_USER
from bgtasks.task_context import TaskContext

# The prompt budget for project files, in characters: about 50,000 tokens at ~4 characters a token, under half
# of a 128k-token context (gpt-4o-mini's), leaving room for instructions and a long structured answer.
# BGTASKS_PROJECT_BUDGET_CHARS sets it (this is its default), e.g. lower for models with smaller contexts.
PROJECT_BUDGET_CHARS = 200_000
MAX_FILE_BYTES = 64_000
# How many withheld files the result names (withheldCount counts them all), and how many directories.
WITHHELD_LISTED = 200
MISSING_LISTED = 200
DIRECTORIES_LISTED = 1_000

SYSTEM_PREAMBLE = (
    "You are a senior software engineer reviewing a project from its source files. Base every statement on "
    "the files shown; when something cannot be known from them, say so instead of guessing. Answer with one "
    "JSON object that matches the given schema."
)

# What result_data holds besides the model's answer: which project and which of its files the model saw.
SOURCE_SCHEMA: Schema = obj(
    "The project and the files the model was shown",
    projectId=string(), projectName=string(), projectPath=string(),
    filesRead=integer("files whose content was in the prompt", minimum=0),
    filesSeen=integer("text files found under the project (after ignore rules)", minimum=0),
    truncatedFiles=integer("files shown only in part", minimum=0),
    promptChars=integer("characters of file content in the prompt", minimum=0),
    budgetChars=integer(minimum=0),
    files=array(string(), "paths of the files read, relative to the project", max_items=100_000),
    withheld=array(obj("a file kept from the model because of secrets (its name only, never its content)",
                       path=string(), reason=string()), max_items=WITHHELD_LISTED),
    withheldCount=integer("files withheld because of secrets, all of them", minimum=0),
    scanLimit=integer("the walk stops after this many files", minimum=0),
    scanLimitReached={"type": "boolean", "description": "the project has more files than the scan limit"},
    missingPaths=array(string(), "paths the answer names that are not files in the project", max_items=200),
    directories=array(obj("a top-level directory (below single-directory chains such as src/)",
                          path=string(), filesSeen=integer(minimum=0), filesRead=integer(minimum=0)),
                      max_items=DIRECTORIES_LISTED),
)


def result_schema(answer_schema: Schema) -> Schema:
    """result_data of a project task: the model's answer plus ``source``."""
    props = {**answer_schema["properties"], "source": SOURCE_SCHEMA}
    return {**answer_schema, "properties": props, "required": list(props)}


def budget_chars(task: TaskContext) -> int:
    """BGTASKS_PROJECT_BUDGET_CHARS (validated at start; default PROJECT_BUDGET_CHARS)."""
    return int(task.settings.bgtasks_project_budget_chars)


def project_roots_for(task: TaskContext) -> list[Path] | None:
    """The roots a task's project path must be under: BGTASKS_PROJECT_ROOTS, except for the local user's
    tasks in development mode (`bgtasks up` on loopback), which may read any directory (None)."""
    settings = task.settings
    if settings.dev_mode and task.user_id == LOCAL_USER:
        return None
    return list(settings.project_roots)


async def read_project(task: TaskContext) -> ProjectSnapshot:
    """The project's files within the budget. A path that is missing or outside the roots fails the task at
    once: retrying cannot make it readable."""
    check_payload(task)
    try:
        root = resolve_project_path(task.project_path or "", project_roots_for(task))
    except ProjectPathError as exc:
        raise PermanentTaskError(str(exc)) from exc
    # The walk and the reads block; off the event loop, so cancellation stays prompt.
    snapshot = await asyncio.to_thread(collect_project_files, root, max_file_bytes=MAX_FILE_BYTES,
                                       budget_chars=budget_chars(task))
    if not snapshot.files:
        raise PermanentTaskError(
            f"project path {task.project_path!r} has no readable text files (ignored directories, .gitignore "
            "entries, binary and secret files are skipped): point the task at the project's source directory")
    return snapshot


def user_prompt(task: TaskContext, snapshot: ProjectSnapshot, ask: str) -> str:
    """The request: which project, what to produce, the user's own instructions, then the files."""
    parts = [f"Project: {task.project_name or task.project_id or 'unnamed'}", "", ask]
    instructions = str(task.payload.get("instructions") or "").strip()
    if instructions:
        parts += ["", f"Additional instructions from the user: {instructions}"]
    parts += ["", snapshot.as_prompt()]
    return "\n".join(parts)


def with_source(task: TaskContext, answer: dict[str, Any], snapshot: ProjectSnapshot) -> dict[str, Any]:
    return {
        **answer,
        "source": {
            "projectId": task.project_id or "",
            "projectName": task.project_name or "",
            "projectPath": snapshot.root,
            "filesRead": len(snapshot.files),
            "filesSeen": snapshot.total_files_seen,
            "truncatedFiles": sum(1 for f in snapshot.files if f.truncated),
            "promptChars": snapshot.content_chars,
            "budgetChars": snapshot.budget_chars,
            "files": [f.path for f in snapshot.files],
            "withheld": [{"path": w.path, "reason": w.reason} for w in snapshot.withheld[:WITHHELD_LISTED]],
            "withheldCount": len(snapshot.withheld),
            "scanLimit": snapshot.scan_limit,
            "scanLimitReached": snapshot.scan_limit_reached,
            "directories": [{"path": d.path, "filesSeen": d.files_seen, "filesRead": d.files_read}
                            for d in snapshot.directories[:DIRECTORIES_LISTED]],
        },
    }


PRIORITY = string("how soon it matters", enum=["high", "medium", "low"])


async def run_project_task(task: TaskContext, *, system: str, ask: str, schema_name: str,
                           answer_schema: Schema,
                           named_paths: Callable[[dict[str, Any]], list[str]] | None = None) -> dict[str, Any]:
    """The flow every per-project type shares: read the project, ask the model, return answer + source.
    ``named_paths``: the existing files the answer claims to be about; those not in the project are listed
    in ``source.missingPaths`` (models invent plausible paths)."""
    task.require_model()  # no key: fail before any work
    await task.progress(10, "Reading project files")
    snapshot = await read_project(task)
    capped = (f" (stopped scanning at {snapshot.scan_limit:,} files: the project is larger)"
              if snapshot.scan_limit_reached else "")
    await task.progress(30, f"Calling the model with {len(snapshot.files)} of {snapshot.total_files_seen} files"
                            f"{capped}")
    answer = await task.ask_model(system=system, user=user_prompt(task, snapshot, ask), schema_name=schema_name,
                                  schema=answer_schema)
    await task.progress(70, "Saving")
    result = with_source(task, answer, snapshot)
    named = named_paths(answer) if named_paths is not None else []
    result["source"]["missingPaths"] = await asyncio.to_thread(missing_paths, Path(snapshot.root), named)
    return result


def missing_paths(root: Path, named: list[str]) -> list[str]:
    """The paths in ``named`` (relative to ``root``) that are not files inside the project, in order, once each,
    at most MISSING_LISTED. A path escaping the root counts as missing; nothing outside it is looked at."""
    out: list[str] = []
    for name in dict.fromkeys(n.strip() for n in named if n and n.strip()):
        candidate = (root / name.lstrip("/")).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            out.append(name)
            if len(out) >= MISSING_LISTED:
                break
    return out
