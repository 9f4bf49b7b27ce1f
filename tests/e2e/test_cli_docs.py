"""The docs' recorded CLI samples are what the commands print: every ```console recorded block of docs/cli.md and
docs/operations.md is run, in order, against a fresh service for each doc (a worker and an API process in development mode),
and each command's output must match the lines the doc shows, ids and times aside. A `…` line in a doc stands
for any lines (those that vary from run to run: progress, traceback frames).

The ids in a doc are placeholders: the first distinct id shown stands for the first id the commands print, and
so on, and a command that names one gets the real id. `BGTASKS_RECORD_DOCS=1` rewrites the blocks' outputs from
this run (keeping the `…` lines' places where they still match) instead of checking them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.test_cli import BGTASKS, Service
from tests.processes import Processes

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/cli.md", "docs/operations.md")
FENCE = re.compile(r"^```console recorded\n(.*?)^```$", re.M | re.S)
TASK_ID = re.compile(r"task_[0-9a-f]{32}")
# What differs between two runs of the same commands: times, worker ids, keys, the change sequence.
VARYING = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?"), "<time>"),
    (re.compile(r"\(in \d+ h \d+ m\)|\(in \d+ m \d+ s\)|\(in \d+ s\)"), "(in <delay>)"),
    (re.compile(r"\b[\w.-]+:\d+:[0-9a-f]{6}\b"), "<worker>"),
    (re.compile(r"\bbgt_[A-Za-z0-9_-]+"), "<key>"),
    (re.compile(r"^(seq\s+)\d+", re.M), r"\g<1><n>"),
    (re.compile(r"http://127\.0\.0\.1:\d+"), "http://127.0.0.1:8000"),  # the service's port: the default
]
ANY = "…"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def blocks(text: str) -> list[tuple[re.Match[str], list[Step]]]:
    found = []
    for m in FENCE.finditer(text):
        steps: list[Step] = []
        for line in m.group(1).splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:]))
            else:
                assert steps, f"output before the first command in a recorded block: {line!r}"
                steps[-1].expected.append(line)
        found.append((m, steps))
    return found


class Ids:
    """The doc's placeholder ids <-> the ids of this run, paired in order of appearance."""

    def __init__(self) -> None:
        self.real: dict[str, str] = {}

    def pair(self, doc_text: str, real_text: str) -> None:
        doc_ids = list(dict.fromkeys(i for i in TASK_ID.findall(doc_text) if i not in self.real))
        real_ids = [i for i in dict.fromkeys(TASK_ID.findall(real_text)) if i not in self.real.values()]
        for doc_id, real_id in zip(doc_ids, real_ids, strict=False):
            self.real[doc_id] = real_id

    def to_real(self, text: str) -> str:
        return TASK_ID.sub(lambda m: self.real.get(m.group(0), m.group(0)), text)

    def to_doc(self, text: str) -> str:
        """`text` with the doc's ids; an id the doc has not shown yet gets the next placeholder."""
        for real_id in dict.fromkeys(TASK_ID.findall(text)):
            if real_id not in self.real.values():
                n = len(self.real) + 1
                while f"task_{n:032x}" in self.real:
                    n += 1
                self.real[f"task_{n:032x}"] = real_id
        back = {v: k for k, v in self.real.items()}
        return TASK_ID.sub(lambda m: back[m.group(0)], text)


def normal_url(text: str) -> str:
    return VARYING[-1][0].sub(VARYING[-1][1], text)


def normal(line: str) -> str:
    for pattern, placeholder in VARYING:
        line = pattern.sub(placeholder, line)
    return " ".join(line.split())


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line after `normal`; a `…` line matches any number of lines."""
    if not expected:
        return not actual
    if expected[0].strip() == ANY:
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and normal(expected[0]) == normal(actual[0]) and matches(expected[1:], actual[1:])


def run(service: Service, ids: Ids, step: Step) -> list[str]:
    args = shlex.split(ids.to_real(step.command), comments=True)
    assert args[0] == "bgtasks", f"a recorded sample runs only bgtasks: {step.command!r}"
    # What a terminal shows: stdout and stderr (a refusal's line, submit's dashboard link) in the order
    # written; the service's port shown as the default's.
    done = subprocess.run([BGTASKS, *args[1:]], env=service.env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60, cwd=service.procs.tmp)
    printed = normal_url(done.stdout)
    ids.pair("\n".join(step.expected), printed)
    return ids.to_doc(printed).rstrip("\n").splitlines()


@pytest.fixture
def service(procs: Processes, database_url: str) -> Iterator[Service]:
    procs.worker(concurrency=2)
    _, base = procs.api()
    yield Service(base, database_url, procs)


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_recorded_cli_samples_are_what_the_commands_print(service: Service, doc: str) -> None:
    record = os.environ.get("BGTASKS_RECORD_DOCS") == "1"
    path = ROOT / doc
    text = path.read_text()
    ids = Ids()
    rewritten, last, checked = [], 0, 0
    for m, steps in blocks(text):
        lines: list[str] = []
        for step in steps:
            actual = run(service, ids, step)
            checked += 1
            if record:
                lines += [f"$ {step.command}", *(step.expected if matches(step.expected, actual) else actual)]
            else:
                assert matches(step.expected, actual), (
                    f"{doc}: `{step.command}` printed\n" + "\n".join(actual)
                    + "\n\nbut the doc shows\n" + "\n".join(step.expected)
                    + "\n\n(BGTASKS_RECORD_DOCS=1 re-records the samples)")
        rewritten.append(text[last:m.start(1)] + "\n".join(lines) + "\n")
        last = m.end(1)
    if record:
        path.write_text("".join(rewritten) + text[last:])
    assert checked >= 5, f"{doc} has recorded samples"
