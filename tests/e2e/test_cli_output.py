"""The CLI reads well: the installed `bgtasks` command in a subprocess, against running `bgtasks api` and
`bgtasks worker` processes (and a local OpenAI-compatible server for model calls). Tables have headers and
aligned columns; colour only on a terminal (a real pseudo-terminal here); `ls` never cuts a word; `delete`,
`types NAME`, `submit --run-at/--depends-on`; `show` prints attempts, model calls and the result once."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.e2e.test_cli import BGTASKS, Service
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.ai_support import ai_worker
from tests.processes import Processes

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def service(procs: Processes, database_url: str) -> Iterator[Service]:
    with FakeOpenAI() as fake:
        ai_worker(procs, fake, concurrency=2)
        _, base = procs.api()
        yield Service(base, database_url, procs)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def on_terminal(service: Service, *args: str, columns: int = 200, **env: str) -> str:
    """What `bgtasks ARGS` writes to a pseudo-terminal `columns` wide (escape codes included)."""
    leader, follower = pty.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        base = {k: v for k, v in service.env().items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
        proc = subprocess.Popen([BGTASKS, *args], env={**base, "TERM": "xterm-256color", **env}, stdin=follower,
                                stdout=follower, stderr=subprocess.PIPE, cwd=service.procs.tmp)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        return b"".join(chunks).decode().replace("\r\n", "\n")
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def colours(text: str) -> list[str]:
    """The foreground colours (SGR 30-38, 90-97) `text` switches to."""
    return [p for m in re.finditer(r"\x1b\[([0-9;]*)m", text) for p in m.group(1).split(";")
            if p and (30 <= int(p) <= 38 or 90 <= int(p) <= 97)]


def cells(line: str) -> list[tuple[int, int]]:
    """Where each cell of a table line starts and ends (cells are two or more spaces apart)."""
    return [m.span() for m in re.finditer(r"\S+(?: \S+)*", line)]


def assert_aligned(text: str, headers: list[str]) -> list[str]:
    """The first line is the header row, these headers first; each cell of a row starts where a header
    starts (left-aligned) or ends where it ends (numbers, right-aligned)."""
    lines = text.rstrip("\n").splitlines()
    head = cells(lines[0])
    assert [lines[0][a:b] for a, b in head][: len(headers)] == headers, text
    starts, ends = {a for a, _ in head}, {b for _, b in head}
    for line in lines[1:]:
        for a, b in cells(line):
            assert a in starts or b in ends, f"misaligned cell {line[a:b]!r} in {line!r} under {lines[0]!r}"
    return lines


def test_tables_have_headers_aligned_columns_and_colour_only_on_a_terminal(service: Service) -> None:
    s = service
    _ok(s.run("keys", "create", "--user", "ann@example.com", "--label", "the nightly import job"))
    _ok(s.run("keys", "create", "--user", "root", "--superuser"))
    keys = assert_aligned(_ok(s.run("keys", "ls")), ["ID", "PREFIX", "USER", "ROLE", "STATE", "LAST USED", "LABEL"])
    assert len(keys) == 3 and "ann@example.com" in keys[2] and keys[2].endswith("the nightly import job")

    _ok(s.run("schedules", "add", "nightly", "noop", "0 3 * * *", "--user", "ann@example.com"))
    _ok(s.run("schedules", "add", "every-minute-report", "sleep", "* * * * *", "--user", "bob", "--disabled"))
    sched = assert_aligned(_ok(s.run("schedules", "ls")), ["NAME", "STATE", "CRON", "TIMEZONE", "TYPE", "USER"])
    assert [ln.split()[:2] for ln in sched[1:]] == [["every-minute-report", "off"], ["nightly", "on"]]

    _ok(s.run("limits", "set", "ann@example.com", "--max-running", "3"))
    limits = assert_aligned(_ok(s.run("limits", "ls")), ["USER", "MAX RUNNING", "MAX CREATED/MIN"])
    assert limits[1].split()[:2] == ["*", "no"] and limits[2].split()[:2] == ["ann@example.com", "3"]

    types = assert_aligned(_ok(s.run("types")), ["TYPE", "LIVE WORKERS", "RETRIES", "TIME LIMIT", "PAYLOAD"])
    assert any(ln.startswith("generation ") and "amount*, " in ln and "category*" in ln for ln in types), types

    done = _ok(s.run("submit", "noop", "--label", "first", "--wait")).splitlines()[0]
    listed = assert_aligned(_ok(s.run("ls")), ["ID", "TYPE", "STATUS", "PROGRESS", "CREATED"])
    assert listed[1].startswith(done) and listed[1].endswith("first")
    assert not ANSI.search(_ok(s.run("ls"))), "no escape codes into a pipe"

    coloured = on_terminal(s, "ls")
    assert "\x1b[" in coloured and ANSI.sub("", coloured).splitlines()[1].startswith(done), coloured
    assert "\x1b[32mcompleted" in coloured, coloured  # green
    assert colours(coloured) and not colours(on_terminal(s, "ls", NO_COLOR="1"))  # bold stays (no-color.org)


def test_ls_never_cuts_an_error_mid_word(service: Service) -> None:
    s = service
    message = " ".join(f"word{i:02d}-{'x' * (i % 7)}" for i in range(40))  # 40 words, about 400 characters
    failed = _ok(s.run("submit", "flaky", "--payload", json.dumps({"failures": 1, "permanent": True,
                                                                    "message": message}))).strip()
    assert s.run("watch", failed, "-q").returncode == 1
    words = set(message.split())

    line = next(ln for ln in _ok(s.run("ls")).splitlines() if ln.startswith(failed))
    note = line.split("  ")[-1].strip()
    assert note.endswith("…") and len(note) <= 90, note
    assert all(w in words for w in note.rstrip("…").split() if w.startswith("word")), note

    narrow = ANSI.sub("", on_terminal(s, "ls", columns=100))  # on a terminal the column wraps at words
    rows = narrow.splitlines()
    start = rows[0].index("LABEL / ERROR")
    first = next(i for i, ln in enumerate(rows) if ln.startswith(failed))
    pieces = [rows[first][start:]] + [ln[start:] for ln in rows[first + 1:] if not ln[:start].strip()]
    assert len(pieces) > 1, narrow
    for piece in pieces:
        for w in piece.strip().rstrip("…").split():
            assert w in words or not w.startswith("word"), f"{w!r} is cut:\n{narrow}"
    assert all(len(ln) <= 100 for ln in rows), narrow


def test_delete_types_run_at_depends_on_and_show(service: Service) -> None:
    s = service
    # delete: as the API (any state); the task is gone (3) and a second delete is 3 too
    done = _ok(s.run("submit", "noop", "--wait")).splitlines()[0]
    assert _ok(s.run("delete", done)).strip() == f"{done} deleted"
    assert s.run("show", done).returncode == 3 and s.run("delete", done).returncode == 3
    assert json.loads(_ok(s.run("delete", _ok(s.run("submit", "noop")).strip(), "--json")))["deleted"]

    # types NAME: the payload's fields; --schema: the JSON Schema as the API has it
    shown = _ok(s.run("types", "generation"))
    assert re.search(r"^amount\s+integer\s+yes\s+minimum 1, maximum 50", shown, re.M), shown
    assert re.search(r"^difficulty\s+string\s+no\s+enum \[\"easy\", \"medium\", \"hard\"\]", shown, re.M), shown
    assert "no other fields" in shown
    schema = json.loads(_ok(s.run("types", "generation", "--schema")))
    api = json.loads(_ok(s.run("types", "--json")))
    assert schema == next(t["payloadSchema"] for t in api if t["name"] == "generation")
    unknown = s.run("types", "no-such-type")
    assert unknown.returncode == 3 and "generation" in unknown.stderr
    assert s.run("types", "--schema").returncode == 2

    # submit --run-at: relative to now, or ISO 8601; --depends-on: repeatable
    # The CLI adds 2 h to this host's clock while it runs: between our readings before and after (order, not a
    # tolerance; the API keeps runAt to the millisecond).
    before = datetime.now(UTC).replace(microsecond=0)
    later = json.loads(_ok(s.run("submit", "noop", "--run-at", "+2h", "--json")))
    after = datetime.now(UTC)
    assert before + timedelta(hours=2) <= datetime.fromisoformat(later["runAt"]) <= after + timedelta(hours=2), later
    fixed = json.loads(_ok(s.run("submit", "noop", "--run-at", "2099-01-02T03:04:05+01:00", "--json")))
    assert datetime.fromisoformat(fixed["runAt"]) == datetime.fromisoformat("2099-01-02T03:04:05+01:00")
    for bad in ("tomorrow", "+2 fortnights", "2099-13-01"):
        refused = s.run("submit", "noop", "--run-at", bad)
        assert refused.returncode == 2 and "--run-at" in refused.stderr, refused
    dependent = _ok(s.run("submit", "noop", "--depends-on", later["id"], "--depends-on", fixed["id"])).strip()
    detail = _ok(s.run("show", dependent))
    assert re.search(rf"^dependsOn\s+{later['id']} \(noop, pending\), {fixed['id']} \(noop, pending\)$", detail,
                     re.M), detail
    assert re.search(r"^waitingFor\s+waiting on 2 dependencies", detail, re.M), detail
    assert re.search(rf"^dependents\s+{dependent} \(noop, pending\)$", _ok(s.run("show", later["id"])), re.M)

    # show: each attempt with its traceback collapsed (--traceback: whole), the model calls, the result once
    flaky = _ok(s.run("submit", "flaky", "--payload", '{"failures": 1, "message": "planned"}', "--wait"))
    flaky_id = flaky.splitlines()[0]
    shown = _ok(s.run("show", flaky_id))
    assert re.search(r"^attempt 1 \(retried, .*\): RuntimeError: planned$", shown, re.M), shown
    collapsed = shown.split("\nattempt 1 ")[1].split("\n\n")[0].splitlines()[1:]
    assert collapsed[0] == "  Traceback (most recent call last):" and collapsed[-1] == "  RuntimeError: planned"
    assert re.fullmatch(rf"    … \d+ more lines \(bgtasks show {flaky_id} --traceback\)", collapsed[1]), shown
    whole = _ok(s.run("show", flaky_id, "--traceback")).split("\nattempt 1 ")[1].split("\n\n")[0].splitlines()[1:]
    assert len(whole) > len(collapsed) and "more lines" not in "\n".join(whole)
    with psycopg.connect(s.database_url) as conn:
        row = conn.execute("SELECT traceback FROM task_attempt_errors WHERE task_id = %s", (flaky_id,)).fetchone()
    assert row is not None and [ln[2:] for ln in whole] == row[0].rstrip("\n").splitlines()

    generated = _ok(s.run("submit", "generation", "--payload", '{"amount": 2, "category": "Historia"}',
                          "--wait")).splitlines()[0]
    shown = _ok(s.run("show", generated))
    calls = shown.split("\nmodel calls\n")[1].split("\n\n")[0].splitlines()
    assert calls[0].split() == ["ATTEMPT", "MODEL", "PROMPT", "COMPLETION", "CACHED", "COST", "DURATION", "AT"]
    assert len(calls) >= 2 and calls[1].split()[:2] == ["1", "fake-model"], shown
    result = json.loads(shown.split("\nresult\n")[1])
    assert result == json.loads(_ok(s.run("show", generated, "--json")))["result"]
    assert shown.count('"questionsGenerated"') == 1, shown  # printed once (result and resultData are equal)
