"""A browser page that holds no API key follows its task with seed two's own client code and the
`subscribeToken` its web app was handed: Debian's chromium through Playwright against real `bgtasks api`
(development mode off) and `bgtasks worker` processes, the model a local OpenAI-compatible server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.test_dashboard import CHROMIUM, LAUNCH_ARGS, make_key
from tests.fakes.openai_server import FakeOpenAI, stall
from tests.integration.ai_support import Router, ai_worker
from tests.processes import Processes

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing: `apt-get install -y chromium`"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

# Seed two's client (docs: quizter-background-tasks-sse.md, "Step 4"), unchanged but for `&token=` in the
# URL; the callbacks it calls record what it saw (window.seen; window.outcome resolves at the end). A guard
# ends the wait if no terminal message ever comes.
SEED_TWO_PAGE = """([taskId, subscribeToken]) => { window.outcome = new Promise((resolve) => {
  const seen = window.seen = [];
  const onUpdate = (task) => seen.push({status: task.status, progress: task.progress});
  const onComplete = (task) => resolve({seen, complete: task});
  const onError = (error) => resolve({seen, error});
  setTimeout(() => resolve({seen, error: 'no terminal message within 60 s'}), 60000);

  const eventSource = new EventSource(`/api/subscribeToTask?taskId=${taskId}&token=${subscribeToken}`);

  eventSource.onmessage = (event) => {
    const data = JSON.parse(event.data);

    switch (data.type) {
      case 'update':
        // Progress update: 10% → 30% → 70%
        onUpdate(data.task);
        break;

      case 'complete':
        // Task klar!
        onComplete(data.task);
        eventSource.close();
        break;

      case 'error':
        // Task misslyckades
        onError(data.error);
        eventSource.close();
        break;
    }
  };
}); }"""

# The same token on another task: EventSource gets a 404 and gives up (readyState CLOSED), and fetch says so.
OTHER_TASK_PAGE = """async ([otherId, ownId, subscribeToken]) => {
  const closed = await new Promise((resolve) => {
    const es = new EventSource(`/api/subscribeToTask?taskId=${otherId}&token=${subscribeToken}`);
    es.onmessage = () => { es.close(); resolve('read a message'); };
    es.onerror = () => { resolve(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'); es.close(); };
  });
  const status = async (path) => (await fetch(path)).status;
  return {
    closed,
    other: await status(`/api/tasks/${otherId}?token=${subscribeToken}`),
    own: await status(`/api/tasks/${ownId}?token=${subscribeToken}`),
    ownWithoutToken: await status(`/api/tasks/${ownId}`),
    cancelWithToken: (await fetch(`/api/tasks/${ownId}/cancel?token=${subscribeToken}`,
                                  {method: 'POST', headers: {'content-type': 'application/json'}, body: '{}'})).status,
  };
}"""


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def test_a_page_with_only_a_subscribe_token_follows_its_task_to_complete_with_seed_two_code(
    procs: Processes, fake: FakeOpenAI, sql: psycopg.Connection[Any]
) -> None:
    router = Router()
    router.route("quiz questions in the category", then=stall(1.0))  # a second: updates before complete
    fake.always(router)
    _, base = procs.api(BGTASKS_DEV="false")
    ai_worker(procs, fake)
    key = make_key(procs, "quiz-app")
    auth = {"Authorization": f"Bearer {key}"}
    sql.execute("UPDATE task_queue_settings SET is_active = false")  # the page subscribes before it runs

    # The web app's backend: creates the task with its key and hands the page taskId and subscribeToken.
    made = httpx.post(base + "/api/generateAIQuestions", headers=auth, timeout=10, json={
        "amount": 2, "category": "Historia", "ageGroup": "adults", "difficulty": "easy", "provider": "openai"})
    assert made.status_code == 200, made.text
    task_id, token = made.json()["taskId"], made.json()["task"]["subscribeToken"]
    other = httpx.post(base + "/api/tasks", headers=auth, timeout=10,
                       json={"taskType": "sleep", "payload": {"seconds": 0}}).json()["task"]["id"]
    assert httpx.get(f"{base}/api/subscribeToTask?taskId={task_id}", timeout=10).status_code == 401

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_context().new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/healthz")  # any page of the service's origin; it holds no key
            page.evaluate(SEED_TWO_PAGE, [task_id, token])
            page.wait_for_function("window.seen.length > 0", timeout=30_000)  # subscribed: the first update
            sql.execute("UPDATE task_queue_settings SET is_active = true")
            outcome: dict[str, Any] = page.evaluate("window.outcome")
            assert "error" not in outcome, outcome
            complete = outcome["complete"]
            assert complete["id"] == task_id and complete["status"] == "completed"
            assert len(complete["result"]["questions"]) == 2
            assert outcome["seen"][0] == {"status": "pending", "progress": 0}, outcome["seen"]

            probes = page.evaluate(OTHER_TASK_PAGE, [other, task_id, token])
            assert probes == {"closed": "closed", "other": 404, "own": 200, "ownWithoutToken": 401,
                              "cancelWithToken": 401}, probes
            assert not errors, errors
        finally:
            browser.close()
