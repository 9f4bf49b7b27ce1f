"""The dashboard in a real browser (Debian's chromium through Playwright) against real `bgtasks api` and
`bgtasks worker` processes: create, watch progress, cancel, filter and search, toasts, a non-superuser's view,
reconnection after an API restart, 5,000 tasks, and the safety of the Markdown renderer. Screenshots go to
test-artifacts/dashboard/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from tests.processes import BGTASKS, Processes, wait_until
from tests.rows import one

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} missing: `apt-get install -y chromium` (the .ci/run script does)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page with the browser's console errors collected, and screenshots named for the test."""

    def __init__(self, browser: Any, base: str, name: str, width: int = 1280, height: int = 900) -> None:
        self.base = base
        self.name = name
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("dialog", lambda d: d.accept())  # delete and clear completed ask to confirm
        self.page.set_default_timeout(15_000)

    def open(self, key: str | None = None) -> Any:
        if key:
            # The key form stores the key in sessionStorage; do it before the app's first request.
            self.page.add_init_script(f"sessionStorage.setItem('bgtasks.apiKey', {key!r})")
        self.page.goto(self.base + "/")
        expect(self.page.locator("#conn")).to_have_attribute("data-state", "live")
        return self.page

    def shot(self, label: str, *, widths: tuple[int, ...] = (1280, 390)) -> list[Path]:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        size = self.page.viewport_size
        paths = []
        for w in widths:
            self.page.set_viewport_size({"width": w, "height": 900})
            self.page.wait_for_timeout(150)
            path = ARTIFACTS / f"{self.name}-{label}-{w}.png"
            self.page.screenshot(path=str(path), full_page=True)
            paths.append(path)
        self.page.set_viewport_size(size)
        return paths

    def close(self) -> None:
        self.context.close()
        assert not self.errors, "\n".join(self.errors)


@pytest.fixture
def service(procs: Processes) -> str:
    _, base = procs.api()
    procs.worker(concurrency=2)
    return base


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    pages: list[Page] = []

    def make(base: str, **kw: Any) -> Page:
        p = Page(browser, base, request.node.name.removeprefix("test_"), **kw)
        pages.append(p)
        return p

    yield make
    for p in pages:
        p.close()


def api(base: str, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.request(method, base + path, headers=headers, timeout=10, **kw)
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def create(base: str, task_type: str, payload: dict[str, Any] | None = None, key: str | None = None,
           **fields: Any) -> dict[str, Any]:
    return api(base, "POST", "/api/tasks", key, json={"taskType": task_type, "payload": payload or {}, **fields})["task"]


def row(page: Any, task_id: str) -> Any:
    return page.locator(f"#rows tr[data-id='{task_id}']")


def make_key(procs: Processes, user: str) -> str:
    out = subprocess.run([*BGTASKS, "keys", "create", "--user", user], env=procs.env(), capture_output=True,
                         text=True, timeout=60, cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    found = re.search(r"bgt_[A-Za-z0-9_-]+", out.stdout)
    assert found, f"no key in the output of `bgtasks keys create`: {out.stdout!r}"
    return found.group(0)


# ---------------------------------------------------------------- tests

def test_task_created_from_the_form_reaches_completed_with_a_moving_progress_bar(service: str, open_page: Any) -> None:
    p = open_page(service)
    page = p.open()
    page.get_by_text("New task").click()
    page.get_by_label("Task type").select_option("sleep")
    page.get_by_label("seconds").fill("4")
    page.get_by_label("steps").fill("8")
    page.get_by_label("Label").fill("e2e sleeper")
    p.shot("form")
    page.get_by_role("button", name="Create task").click()

    bar = page.get_by_role("progressbar", name="Progress of e2e sleeper")
    expect(bar).to_be_visible()
    seen: set[int] = set()
    shot_running = False
    deadline = time.monotonic() + 30
    badge = page.locator("#rows tr", has_text="e2e sleeper").locator(".badge")
    while time.monotonic() < deadline:
        seen.add(int(bar.get_attribute("aria-valuenow") or 0))
        if not shot_running and len([v for v in seen if 0 < v < 100]) >= 2:
            p.shot("running", widths=(1280,))
            shot_running = True
        if badge.inner_text() == "Completed":
            break
        page.wait_for_timeout(100)
    expect(badge).to_have_text("Completed")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    between = sorted(v for v in seen if 0 < v < 100)
    assert len(between) >= 2, f"the progress bar never moved through intermediate values: {sorted(seen)}"
    expect(page.locator(".toast", has_text="Completed: e2e sleeper")).to_be_visible()
    expect(page.locator("#counts .status-completed .count-n")).to_have_text("1")
    p.shot("completed")

    page.get_by_role("button", name="Details of e2e sleeper").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".result-box")).to_contain_text("Slept")
    p.shot("details")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Details of e2e sleeper")).to_be_focused()


def test_cancel_a_running_task_from_its_row(service: str, open_page: Any) -> None:
    task = create(service, "sleep", {"seconds": 60, "steps": 60}, label="long sleeper")
    p = open_page(service)
    page = p.open()
    r = row(page, task["id"])
    expect(r.locator(".badge")).to_have_text("Processing", timeout=20_000)
    r.get_by_role("button", name="Cancel long sleeper").click()
    expect(r.locator(".badge")).to_have_text("Cancelled")
    expect(r.get_by_role("button", name="Retry long sleeper")).to_be_visible()
    wait_until(lambda: api(service, "GET", f"/api/tasks/{task['id']}")["task"]["status"] == "cancelled", 10,
               "the task to be cancelled in the database")
    p.shot("cancelled")


def test_filter_and_search_and_a_toast_when_a_task_fails(service: str, open_page: Any) -> None:
    alpha = create(service, "noop", label="alpha report", projectId="p-alpha", projectName="Alpha")
    beta = create(service, "noop", label="beta summary", projectId="p-beta", projectName="Beta")
    p = open_page(service)
    page = p.open()
    expect(row(page, alpha["id"]).locator(".badge")).to_have_text("Completed", timeout=20_000)
    expect(row(page, beta["id"]).locator(".badge")).to_have_text("Completed", timeout=20_000)

    failing = create(service, "flaky", {"failures": 5, "permanent": True, "message": "the model said no"},
                     label="doomed", maxRetries=0)
    expect(page.locator(".toast", has_text="Failed: doomed")).to_be_visible(timeout=20_000)
    p.shot("failure-toast", widths=(1280,))

    page.get_by_label("Status", exact=True).select_option("error")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(row(page, failing["id"])).to_be_visible()
    row(page, failing["id"]).get_by_role("button", name="Details of doomed").click()
    expect(page.get_by_role("dialog").locator(".error-box")).to_contain_text("the model said no")
    p.shot("failure-details")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Clear filters").click()
    expect(page.locator("#rows tr")).to_have_count(3)
    page.get_by_label("Search").fill("alpha")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(row(page, alpha["id"])).to_be_visible()
    p.shot("search")

    page.get_by_label("Search").fill("")
    expect(page.locator("#rows tr")).to_have_count(3)
    page.get_by_label("Type", exact=True).select_option("flaky")
    expect(page.locator("#rows tr")).to_have_count(1)
    page.get_by_label("Type", exact=True).select_option("")
    page.get_by_label("Project", exact=True).fill("p-beta")
    page.get_by_label("Project", exact=True).press("Enter")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(row(page, beta["id"])).to_be_visible()

    # Counts by status are buttons that filter too.
    page.get_by_role("button", name="Clear filters").click()
    page.locator("#counts button[data-status='completed']").click()
    expect(page.locator("#rows tr")).to_have_count(2)


def test_a_live_row_under_a_search_is_one_the_server_would_list(service: str, open_page: Any) -> None:
    """A search matches the fields the server's filter matches (the page is told them), so a live row that a
    reload would drop never shows: here a task whose project name, not its label or description, has the word."""
    listed = create(service, "noop", label="zeta listed")
    create(service, "noop", label="unrelated")
    p = open_page(service)
    page = p.open()
    expect(page.locator("#rows tr")).to_have_count(2)
    fields = json.loads(page.locator("#task-search").text_content() or "null")
    assert fields == {"fields": ["label", "description"]}
    page.get_by_label("Search").fill("zeta")
    expect(page.locator("#rows tr")).to_have_count(1)  # the search applied: the server listed one
    expect(row(page, listed["id"])).to_be_visible()

    elsewhere = create(service, "noop", label="other work", projectId="p-zeta", projectName="Zeta")
    live = create(service, "noop", label="plain", description="zeta in the description")
    expect(row(page, live["id"])).to_be_visible(timeout=20_000)  # events arrive in order: elsewhere's came first
    assert row(page, elsewhere["id"]).count() == 0, "a live row shown that the server's search does not match"
    assert page.locator("#rows tr").count() == 2
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#rows tr")).to_have_count(2)  # the reload lists the same rows
    expect(row(page, elsewhere["id"])).to_have_count(0)


def test_the_pages_one_backoff_doubles_to_its_cap_with_the_jitter_it_is_given(procs: Processes,
                                                                              open_page: Any) -> None:
    """service/static/backoff.js (the SSE reconnect's wait), run in Chromium with an injected random source."""
    _, base = procs.api()
    page = open_page(base).open()
    delays = page.evaluate("""async () => {
        const { backoffDelay } = await import("/static/backoff.js");
        const opts = { base: 2000, cap: 10000, jitter: 250, random: () => 0 };
        return [[0, 1, 2, 3, 4, 50].map((n) => backoffDelay(n, opts)),
                backoffDelay(0, { ...opts, random: () => 1 }), backoffDelay(-1, { base: 2, cap: 5 })];
    }""")
    assert delays == [[2000, 4000, 8000, 10000, 10000, 10000], 2250, 2]


def test_bulk_actions_and_clear_completed(service: str, open_page: Any) -> None:
    done = [create(service, "noop", label=f"done {i}") for i in range(3)]
    slow = [create(service, "sleep", {"seconds": 60}, label=f"slow {i}", priority=-1) for i in range(3)]
    p = open_page(service)
    page = p.open()
    for t in done:
        expect(row(page, t["id"]).locator(".badge")).to_have_text("Completed", timeout=20_000)
    for t in slow:
        row(page, t["id"]).get_by_role("checkbox").check()
    expect(page.locator("#selected-count")).to_have_text("3 selected")
    page.get_by_role("button", name="Cancel selected").click()
    for t in slow:
        expect(row(page, t["id"]).locator(".badge")).to_have_text("Cancelled")
    page.get_by_role("button", name="Delete selected").click()
    for t in slow:
        expect(row(page, t["id"])).to_have_count(0)
    page.get_by_role("button", name="Clear completed").click()
    expect(page.locator("#rows tr")).to_have_count(0)
    expect(page.locator("#counts .status-completed .count-n")).to_have_text("0")


def test_a_user_who_is_not_a_superuser_sees_only_their_own_tasks(procs: Processes, service: str,
                                                                 open_page: Any) -> None:
    key = make_key(procs, "alice")
    theirs = create(service, "noop", label="someone else's task")
    mine = create(service, "noop", key=key, label="alice's task")
    p = open_page(service)
    page = p.open(key=key)
    expect(row(page, mine["id"])).to_be_visible()
    expect(row(page, theirs["id"])).to_have_count(0)
    expect(page.locator("#queue-panel")).to_be_visible()  # the queue's status, read-only
    expect(page.locator("#queue-stop")).to_be_hidden()
    expect(page.get_by_role("columnheader", name="User")).to_be_hidden()
    expect(page.locator("#counts .status-completed .count-n")).to_have_text("1", timeout=20_000)

    # Live: another user's new task never shows up; alice's does (the stream carries her key in a header).
    later_theirs = create(service, "noop", label="another of someone else's")
    later_mine = create(service, "noop", key=key, label="alice again")
    expect(row(page, later_mine["id"]).locator(".badge")).to_have_text("Completed", timeout=20_000)
    expect(row(page, later_theirs["id"])).to_have_count(0)
    expect(page.locator("#rows tr")).to_have_count(2)
    p.shot("alice")


def test_the_page_catches_up_after_the_api_restarts(procs: Processes, open_page: Any) -> None:
    from tests.processes import free_port

    port = free_port()
    api_proc, base = procs.api(port=port)
    procs.worker(concurrency=2)
    task = create(base, "sleep", {"seconds": 3, "steps": 3}, label="survivor")
    p = open_page(base)
    page = p.open()
    expect(row(page, task["id"]).locator(".badge")).to_have_text("Processing", timeout=20_000)

    api_proc.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    import psycopg

    with psycopg.connect(procs.database_url, autocommit=True) as conn:
        wait_until(lambda: one(conn, "SELECT status FROM background_tasks WHERE id = %s",
                                        (task["id"],))[0] == "completed",
                   30, "the task to complete while the API is down")
    procs.api(port=port)
    # The change happened while the page was disconnected: it arrives from the resumed stream.
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=30_000)
    expect(row(page, task["id"]).locator(".badge")).to_have_text("Completed", timeout=20_000)
    created_after = create(base, "noop", label="after restart")
    expect(row(page, created_after["id"])).to_be_visible()


def test_five_thousand_tasks_are_paged_and_searched_by_the_server(procs: Processes, open_page: Any) -> None:
    # How quick the page is belongs in a benchmark; what keeps it quick is tested here: the browser never asks
    # for more than one page of rows, and counts and search are answered by the server, not by the page.
    _, base = procs.api()  # no worker: the tasks stay pending
    with psycopg.connect(procs.database_url, autocommit=True) as sql:  # over the default 1,000 a minute
        sql.execute("INSERT INTO user_limits (user_id, max_created_per_minute) VALUES ('local', 10000)")
    for batch in range(5):
        api(base, "POST", "/api/tasks/batch", json={"tasks": [
            {"taskType": "noop", "label": f"bulk {batch * 1000 + i:04d}"} for i in range(1000)]})
    p = open_page(base)
    lists: list[dict[str, list[str]]] = []

    def record(request: Any) -> None:
        url = urlsplit(request.url)
        if url.path == "/api/tasks" and request.method == "GET":
            lists.append(parse_qs(url.query))

    p.page.on("request", record)
    page = p.open()
    expect(page.locator("#rows tr")).to_have_count(50)
    expect(page.locator("#counts .status-pending .count-n")).to_have_text("5,000")  # thousands grouped
    expect(page.locator("#matching")).to_have_text("5,000 matching")
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    expect(page.locator("#rows tr")).to_have_count(50)
    page.get_by_label("Search").fill("bulk 4321")
    expect(page.locator("#rows tr")).to_have_count(1)
    assert lists and all(q.get("limit") == ["50"] for q in lists), lists
    assert any("cursor" in q for q in lists), "the second page is asked for by cursor"
    assert lists[-1].get("q") == ["bulk 4321"], "the search is sent to the server"
    page.get_by_label("Search").fill("")
    page.get_by_label("Rows per page").select_option("200")
    expect(page.locator("#rows tr")).to_have_count(200)
    assert max(int(q["limit"][0]) for q in lists) == 200, lists
    p.shot("5000")


def test_narrow_screen_and_keyboard(service: str, open_page: Any) -> None:
    create(service, "noop", label="small screen task")
    p = open_page(service, width=390, height=844)
    page = p.open()
    expect(page.locator("#rows tr")).to_have_count(1)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at 390 px ({width} px wide)"
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the task table")).to_be_focused()
    # Every control has a name a screen reader can say.
    unnamed = page.evaluate("""() => [...document.querySelectorAll('button, input, select, textarea')]
        .filter(e => e.offsetParent !== null && !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                     && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unnamed == []
    # Open the create form from the keyboard.
    page.locator("#create-box summary").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Task type")).to_be_visible()
    p.shot("narrow", widths=(390,))


def test_markdown_results_render_without_running_any_html(service: str, open_page: Any) -> None:
    p = open_page(service)
    page = p.open()
    out = page.evaluate("""async () => {
        const { renderMarkdown } = await import('/static/markdown.js');
        const node = renderMarkdown(
          '# Title\\n\\n<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2">\\n\\n' +
          '**bold** and [bad](javascript:alert(1)) and [good](https://example.com)\\n\\n- one\\n- two\\n\\n' +
          '```\\n<b>code</b>\\n```');
        document.body.append(node);
        return { html: node.innerHTML, scripts: node.querySelectorAll('script, img').length,
                 links: [...node.querySelectorAll('a')].map(a => a.getAttribute('href')),
                 h1: node.querySelector('h1')?.textContent, items: node.querySelectorAll('li').length,
                 strong: node.querySelector('strong')?.textContent, pwned: window.pwned ?? null };
    }""")
    assert out["scripts"] == 0 and out["pwned"] is None
    assert out["links"] == ["https://example.com"]
    assert out["h1"] == "Title" and out["items"] == 2 and out["strong"] == "bold"
    assert "&lt;script&gt;" in out["html"] and "&lt;b&gt;code&lt;/b&gt;" in out["html"]


def test_the_page_is_served_with_a_strict_content_security_policy(service: str) -> None:
    r = httpx.get(service + "/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script type=\"module\" src=\"/static/app.js\">" in r.text
    assert "__BGTASKS_TASK_TYPES__" not in r.text and '"name":"sleep"' in r.text
    for asset in ("app.js", "api.js", "live.js", "backoff.js", "markdown.js", "results.js", "form.js", "format.js",
                  "style.css"):
        assert httpx.get(f"{service}/static/{asset}").status_code == 200, asset
    assert not re.search(r'(src|href)="(https?:)?//', r.text), "the page loads nothing from another origin (no CDN)"


def test_a_pending_task_says_why_it_waits_and_a_failed_attempt_shows_its_traceback(
        procs: Processes, service: str, open_page: Any) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    scheduled = create(service, "noop", label="later", runAt=later.isoformat())
    chained = create(service, "noop", label="after later", dependsOn=[scheduled["id"]])
    with psycopg.connect(procs.database_url, autocommit=True) as sql:
        sql.execute("INSERT INTO user_limits (user_id, max_running) VALUES ('local', 1)")
    running = create(service, "sleep", {"seconds": 60, "steps": 60}, label="long sleep")
    wait_until(lambda: api(service, "GET", f"/api/tasks/{running['id']}")["task"]["status"] == "processing", 30,
               "the long sleep to start")
    held = create(service, "noop", label="held")
    failing = create(service, "flaky", {"failures": 1, "permanent": True, "message": "broken on purpose"},
                     label="broken", maxRetries=0)

    p = open_page(service)
    page = p.open()
    expect(row(page, scheduled["id"]).locator(".badge")).to_have_text(re.compile(r"^Scheduled · in 1 h 5\d m$"))
    expect(row(page, chained["id"]).locator(".badge")).to_have_text("Waiting on 1 task")
    expect(row(page, held["id"]).locator(".badge")).to_have_text("Blocked: 1/1 running")
    expect(row(page, held["id"]).locator(".badge")).to_have_attribute(
        "title", "held by the user's limit: 1/1 running (user_limits of local)")
    p.shot("waiting-reasons", widths=(1280,))

    row(page, chained["id"]).get_by_role("button", name="Details of after later").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"waiting on 1 dependency: {scheduled['id']}")
    dialog.locator(f"[data-task-link='{scheduled['id']}']").click()  # the dependency's own detail
    expect(dialog.locator("#detail-h")).to_have_text("later")
    expect(dialog).to_contain_text("scheduled for later: run_at")
    page.keyboard.press("Escape")

    api(service, "POST", f"/api/tasks/{running['id']}/cancel")  # the user's limit has room again
    expect(row(page, held["id"]).locator(".badge")).to_have_text("Completed", timeout=20_000)
    expect(row(page, failing["id"]).locator(".badge")).to_have_text("Failed", timeout=20_000)
    row(page, failing["id"]).get_by_role("button", name="Details of broken").click()
    attempt = dialog.locator(".attempts .attempt-error")
    expect(attempt).to_contain_text("PermanentTaskError: broken on purpose")
    expect(attempt).not_to_contain_text("PermanentTaskError: PermanentTaskError")
    tb = attempt.locator("details.traceback pre")
    expect(tb).to_be_hidden()  # collapsed until asked for
    attempt.locator("details.traceback summary").click()
    expect(tb).to_contain_text("Traceback (most recent call last):")
    expect(tb).to_contain_text("raise PermanentTaskError(message)")
    p.shot("attempt-traceback", widths=(1280,))
