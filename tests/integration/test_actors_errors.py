"""How model failures end, through real workers and the real openai client against the local server: no key,
bad key, 429 with Retry-After, 500, timeouts, a stalled call cancelled mid-flight, malformed JSON and answers
that break the schema. Every stored message is one a user can act on, and failed calls are accounted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.fakes.openai_server import (
    FakeOpenAI,
    answer,
    malformed,
    rate_limited,
    server_error,
    stall,
    trickle,
    unauthorized,
    wrong_schema,
)
from tests.integration.ai_support import (
    Abandoned,
    Router,
    ai_worker,
    attempt_errors,
    insert_task,
    model_calls,
    task_row,
    wait_final,
)
from tests.processes import Processes, wait_until


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def generate(sql: psycopg.Connection[Any], marker: str, **cols: Any) -> str:
    """A generation task whose prompt carries ``marker`` (its category), so the router can script it."""
    return insert_task(sql, "generation", {"amount": 2, "category": marker}, **cols)


def test_no_api_key_fails_at_once_with_the_seed_message(sql: psycopg.Connection[Any], procs: Processes,
                                                        fake: FakeOpenAI) -> None:
    ai_worker(procs, fake, OPENAI_API_KEY="")
    task_id = generate(sql, "keyless")
    # A project task checks the key before it reads anything: its (unreadable) path is never looked at.
    project = insert_task(sql, "docs", {}, project_id="p", project_name="P", project_path="/no/such/project")
    rows = wait_final(sql, [task_id, project], timeout=20)
    for row in rows.values():
        assert row["status"] == "error"
        assert row["error_message"] == "API key not configured for provider: openai"
        assert row["retry_count"] == 0 and row["attempt"] == 1
        assert row["progress"] == 0, "no work is reported before the key check"
    assert fake.requests == []


def test_each_model_failure_ends_as_its_kind_says(sql: psycopg.Connection[Any], procs: Processes,
                                                 fake: FakeOpenAI) -> None:
    sql.execute("UPDATE task_queue_settings SET retry_base_delay_ms = 100")
    router = Router()
    router.route("case-401", then=unauthorized())
    router.route("case-429", rate_limited(retry_after=1))
    router.route("case-500", server_error(500), server_error(503))
    router.route("case-timeout", stall(6))
    router.route("case-malformed", then=malformed())
    router.route("case-wrong-schema", then=wrong_schema())
    router.route("case-fixed-on-reask", wrong_schema({"questions": "two of them"}))
    fake.always(router)
    ai_worker(procs, fake, BGTASKS_MODEL_TIMEOUT_S="2")
    ids = {case: generate(sql, case, max_retries=1 if case in ("case-malformed", "case-wrong-schema") else 3)
           for case in ("case-401", "case-429", "case-500", "case-timeout", "case-malformed",
                        "case-wrong-schema", "case-fixed-on-reask")}
    rows = wait_final(sql, list(ids.values()), timeout=60)

    def ended(case: str) -> tuple[str, int, str | None]:
        r = rows[ids[case]]
        return r["status"], r["retry_count"], r["error_message"]

    # Authentication: permanent, one call, says which setting to fix.
    status, retries, message = ended("case-401")
    assert (status, retries) == ("error", 0)
    assert message is not None and message.startswith("authentication failed for provider openai: check OPENAI_API_KEY")
    assert router.seen["case-401"] == 1

    # 429 with Retry-After: 1: run again no sooner than the server asked, although the backoff base is 100 ms,
    # and without spending a retry.
    assert ended("case-429")[:2] == ("completed", 0)
    [first] = attempt_errors(sql, ids["case-429"])
    assert first["outcome"] == "rate_limited" and "rate limit (429)" in first["error_message"]
    assert "retry after 1s" in first["error_message"]
    row = task_row(sql, ids["case-429"])
    assert (row["run_at"] - first["failed_at"]).total_seconds() >= 1.0
    assert row["started_at"] >= row["run_at"]

    # Server errors: retried with backoff, then done.
    assert ended("case-500")[:2] == ("completed", 2)
    assert [e["error_message"] for e in attempt_errors(sql, ids["case-500"])] == [
        f"model endpoint {fake.base_url} returned 500 Internal Server Error: "
        "The server had an error while processing your request.",
        f"model endpoint {fake.base_url} returned 503 Service Unavailable: "
        "The server had an error while processing your request.",
    ]

    # A call that outlives the model timeout is abandoned and retried.
    assert ended("case-timeout")[:2] == ("completed", 1)
    [timed_out] = attempt_errors(sql, ids["case-timeout"])
    assert timed_out["error_message"].endswith(
        f"model endpoint {fake.base_url} did not answer within 2s (BGTASKS_MODEL_TIMEOUT_S, the total time of one call)")

    # Malformed JSON: re-asked within the run, then a permanent error that says what was wrong (re-running
    # the same prompt would repeat the same paid calls).
    status, retries, message = ended("case-malformed")
    assert (status, retries) == ("error", 0)
    assert message is not None and message.startswith(
        "model output for schema 'quiz_questions' was not usable JSON: not valid JSON")
    assert router.seen["case-malformed"] == 2  # the answer and its re-ask, one run
    assert len(model_calls(sql, ids["case-malformed"])) == 2  # failed calls are accounted

    status, retries, message = ended("case-wrong-schema")
    assert (status, retries) == ("error", 0)
    assert message is not None and message.endswith(
        "model output did not match schema 'quiz_questions': (root): expected object, got array")
    row = task_row(sql, ids["case-wrong-schema"])
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0

    # A schema miss the re-ask fixes costs two calls, no retry.
    assert ended("case-fixed-on-reask")[:2] == ("completed", 0)
    assert len(model_calls(sql, ids["case-fixed-on-reask"])) == 2
    reask = [r for r in fake.requests if "case-fixed-on-reask" in str(r.messages)][-1]
    assert "questions: expected array, got string" in reask.messages[-1]["content"]

    messages = [str(r["error_message"]) for r in rows.values()] + [
        e["error_message"] for i in ids.values() for e in attempt_errors(sql, i)]
    class_name = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)+(?:Error|Output|Exception)\b")
    assert not [m for m in messages if "Traceback" in m or class_name.search(m)], messages


def test_a_task_cancelled_during_a_stalled_call_ends_cancelled_and_abandons_the_call(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    stalled = Abandoned(seconds=30)
    fake.always(Router().route("case-stall", stalled))
    ai_worker(procs, fake)
    task_id = generate(sql, "case-stall")
    wait_until(lambda: stalled.started is not None, 20, "the model call to start")
    wait_until(lambda: task_row(sql, task_id)["progress"] == 30, 5, "the task to report 'calling the model'")
    sql.execute("SELECT cancel_task(%s, 'cancelled by test')", (task_id,))
    # The stall lasts 30 s and ends without a hang-up: hung_up set means the worker abandoned the call.
    wait_until(lambda: stalled.hung_up is not None, 20, "the worker to abandon the stalled call")

    # The worker is free again and never writes over the cancellation.
    fake.always(answer())
    after = generate(sql, "after-the-stall")
    assert wait_final(sql, [after], timeout=10)[after]["status"] == "completed"
    row = task_row(sql, task_id)
    assert row["status"] == "cancelled" and row["result_data"] is None
    assert row["error_message"] == "cancelled by test" and row["cancel_reason"] == "cancelled by test"
    assert attempt_errors(sql, task_id) == []


def test_a_burst_of_rate_limits_waits_then_completes_without_spending_retries(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    sql.execute("UPDATE task_queue_settings SET retry_base_delay_ms = 50, retry_max_delay_ms = 200")
    router = Router()
    router.route("burst-hinted", *[rate_limited(retry_after=0.2) for _ in range(6)])
    router.route("burst-unhinted", *[rate_limited(retry_after=None) for _ in range(6)])
    router.route("burst-shown", rate_limited(retry_after=2))
    fake.always(router)
    ai_worker(procs, fake)
    ids = {case: generate(sql, case, max_retries=1) for case in ("burst-hinted", "burst-unhinted", "burst-shown")}

    # While it waits, the task says so (and stays pending, its retries untouched).
    def waiting() -> dict[str, Any] | None:
        row = task_row(sql, ids["burst-shown"])
        return row if row["status"] == "pending" and row["description"] else None

    row = wait_until(waiting, 20, "the rate-limited task to show that it waits")
    assert row["description"].startswith("Waiting for the model provider (rate limited)"), row["description"]
    assert row["retry_count"] == 0

    rows = wait_final(sql, list(ids.values()), timeout=60)
    for case, task_id in ids.items():
        assert rows[task_id]["status"] == "completed", (case, rows[task_id]["error_message"])
        assert rows[task_id]["retry_count"] == 0, case
        assert {e["outcome"] for e in attempt_errors(sql, task_id)} == {"rate_limited"}
    assert len(attempt_errors(sql, ids["burst-hinted"])) == 6
    assert len(attempt_errors(sql, ids["burst-unhinted"])) == 6
    assert rows[ids["burst-hinted"]]["provider_wait_seconds"] == pytest.approx(1.2)
    assert rows[ids["burst-shown"]]["provider_wait_seconds"] == pytest.approx(2.0)


def test_rate_limits_past_the_total_wait_count_as_failed_attempts(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    sql.execute("UPDATE task_queue_settings SET retry_base_delay_ms = 50, retry_max_delay_ms = 200")
    fake.always(Router().route("endless-429", then=rate_limited(retry_after=0.4)))
    ai_worker(procs, fake, BGTASKS_RATE_LIMIT_MAX_WAIT_S="1")
    task_id = generate(sql, "endless-429", max_retries=1)
    row = wait_final(sql, [task_id], timeout=60)[task_id]
    assert row["status"] == "error" and row["retry_count"] == 1
    outcomes = [e["outcome"] for e in attempt_errors(sql, task_id)]
    assert outcomes == ["rate_limited", "rate_limited", "retried", "failed"], outcomes
    assert "over the limit of 1 s: counted as a failed attempt" in row["error_message"]


def test_a_trickling_model_hits_the_total_deadline_and_the_lease_stays_honest(
        sql: psycopg.Connection[Any], procs: Processes, fake: FakeOpenAI) -> None:
    # The test worker's lease is 3 s; the model timeout (4 s) outlives it, so only heartbeats keep it held.
    sql.execute("UPDATE task_queue_settings SET retry_base_delay_ms = 100")
    fake.always(Router().route("case-trickle", trickle(0.5, b" " * 20)))
    ai_worker(procs, fake, BGTASKS_MODEL_TIMEOUT_S="4")
    task_id = generate(sql, "case-trickle", max_retries=2)
    row = wait_final(sql, [task_id], timeout=60)[task_id]
    assert (row["status"], row["retry_count"]) == ("completed", 1)
    assert row["description"] == "Saving 2 questions (attempt 2 of 3)", "a retry's progress names its attempt"
    [timed_out] = attempt_errors(sql, task_id)
    assert timed_out["outcome"] == "retried", "a lease that lapsed would say lease_expired"
    assert timed_out["error_message"] == (
        f"model endpoint {fake.base_url} did not answer within 4s (BGTASKS_MODEL_TIMEOUT_S, the total time of "
        "one call)")
    ran = (timed_out["failed_at"] - timed_out["started_at"]).total_seconds()
    assert ran < 4 + 6, f"the attempt ran {ran:.1f}s against a 4s deadline (the trickle lasts 600s)"
