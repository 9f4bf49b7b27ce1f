"""The worker's queries over psycopg (worker threads are synchronous): claim, finish, heartbeat, reap."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from .driver import Conn, run, value


def complete_tasks(conn: Conn, items: Sequence[tuple[str, int, Any]]) -> set[str]:
    ids = [i for i, _, _ in items]
    attempts = [a for _, a, _ in items]
    results = [Jsonb(r) for _, _, r in items]
    return {row["id"] for row in run(conn, "complete_tasks", ids, attempts, results).fetchall()}


def fail_task(conn: Conn, task_id: str, attempt: int, error_type: str, message: str, permanent: bool,
              retry_after_s: float | None) -> str | None:
    return value(run(conn, "fail_task", task_id, attempt, error_type, message, permanent, retry_after_s))


def record_attempt_traceback(conn: Conn, task_id: str, attempt: int, traceback: str) -> bool:
    return bool(value(run(conn, "record_attempt_traceback", task_id, attempt, traceback)))


def postpone_rate_limited(conn: Conn, task_id: str, attempt: int, error_type: str, message: str,
                          retry_after_s: float | None, max_wait_s: float) -> str | None:
    return value(run(conn, "postpone_rate_limited", task_id, attempt, error_type, message, retry_after_s,
                     max_wait_s))


def reserve_provider_budget(conn: Conn, provider: str, model: str, task_id: str, estimate: int,
                            hold_s: float) -> dict[str, Any]:
    row = run(conn, "reserve_provider_budget", provider, model, task_id, estimate, hold_s).fetchone()
    assert row is not None
    return dict(row)


def settle_provider_budget(conn: Conn, reservation: int, used_tokens: int | None, rate_limited: bool,
                           retry_after_s: float | None, requests_left: int | None, requests_reset_s: float | None,
                           tokens_left: int | None, tokens_reset_s: float | None, seen_s_ago: float) -> bool:
    return bool(value(run(conn, "settle_provider_budget", reservation, used_tokens, rate_limited, retry_after_s,
                          requests_left, requests_reset_s, tokens_left, tokens_reset_s, seen_s_ago)))


def postpone_for_budget(conn: Conn, task_id: str, attempt: int, provider: str, model: str, wait_s: float,
                        message: str) -> str | None:
    return value(run(conn, "postpone_for_budget", task_id, attempt, provider, model, wait_s, message))


def release_task(conn: Conn, task_id: str, attempt: int) -> bool:
    return bool(value(run(conn, "release_task", task_id, attempt)))


def extend_leases(conn: Conn, worker_id: str, task_ids: Sequence[str], lease_s: float) -> set[str]:
    return {row["id"] for row in run(conn, "extend_leases", worker_id, list(task_ids), lease_s).fetchall()}


def reap_expired_leases(conn: Conn, grace_s: float, limit: int = 100) -> int:
    return int(value(run(conn, "reap_expired_leases", limit, grace_s)) or 0)


def report_progress(conn: Conn, task_id: str, attempt: int, percent: int, description: str | None) -> bool:
    return run(conn, "report_progress", task_id, attempt, percent, description).fetchone() is not None


def report_progress_batch(conn: Conn, reports: list[tuple[str, int, int, str | None]]) -> set[str]:
    """(task id, attempt, percent, description) each; the ids still held at that attempt."""
    ids, attempts, percents, descriptions = (list(c) for c in zip(*reports, strict=True))
    return {r["id"] for r in run(conn, "report_progress_batch", ids, attempts, percents, descriptions)}


def user_spending_today(conn: Conn, user_id: str) -> tuple[Any, Any]:
    row = run(conn, "user_spending_today", user_id).fetchone()
    return (row["cap_usd"], row["spent_usd"]) if row else (None, None)


def append_task_output(conn: Conn, task_id: str, attempt: int, text: str, max_chars: int) -> int | None:
    row = run(conn, "append_task_output", task_id, attempt, text, max_chars).fetchone()
    return None if row is None else row["seq"]


def task_status(conn: Conn, task_id: str) -> str | None:
    row = run(conn, "task_status", task_id).fetchone()
    return None if row is None else row["status"]


def register_worker(conn: Conn, worker_id: str, hostname: str, pid: int, concurrency: int) -> None:
    run(conn, "register_worker", worker_id, hostname, pid, concurrency)


def worker_heartbeat(conn: Conn, worker_id: str, outage_s: float) -> None:
    run(conn, "worker_heartbeat", worker_id, outage_s)


def worker_stopped(conn: Conn, worker_id: str) -> None:
    run(conn, "worker_stopped", worker_id)


def queue_settings(conn: Conn) -> dict[str, Any]:
    row = run(conn, "queue_settings").fetchone()
    assert row is not None, "task_queue_settings has no row: run `bgtasks migrate`"
    return dict(row)


def mark_polled(conn: Conn, every_ms: int) -> None:
    run(conn, "mark_polled", every_ms)


def record_model_call(conn: Conn, task_id: str, attempt: int, model: str, prompt_tokens: int,
                      completion_tokens: int, total_tokens: int, duration_ms: int,
                      cached_prompt_tokens: int = 0) -> None:
    run(conn, "record_model_call", task_id, attempt, model, prompt_tokens, completion_tokens, total_tokens,
        duration_ms, cached_prompt_tokens)


def complete_and_claim(conn: Conn, items: Sequence[tuple[str, int, Any]], worker_id: str, limit: int,
                       lease_s: float) -> tuple[list[dict[str, Any]], float | None]:
    """Complete `items` (id, attempt, result) and claim up to `limit` tasks: (the claimed rows, seconds until
    the earliest delayed task falls due or None)."""
    ids = [i for i, _, _ in items]
    attempts = [a for _, a, _ in items]
    results = [Jsonb(r) for _, _, r in items]
    out = run(conn, "complete_and_claim", ids, attempts, results, worker_id, limit, lease_s).fetchall()
    wait = out[0]["wait"] if out else None
    return [r for r in out if r["id"] is not None], None if wait is None else float(wait)


def release_lost_claims(conn: Conn, worker_id: str, claimed_after: datetime) -> list[str]:
    return [r["id"] for r in run(conn, "release_lost_claims", worker_id, claimed_after).fetchall()]


def task_statuses(conn: Conn, task_ids: Sequence[str]) -> dict[str, str]:
    return {r["id"]: r["status"] for r in run(conn, "task_statuses", list(task_ids)).fetchall()}


def enqueue_task(conn: Conn, task_type: str, user_id: str, payload: dict[str, Any], delay_s: float) -> str:
    row = run(conn, "enqueue_task", task_type, user_id, Jsonb(payload), delay_s).fetchone()
    assert row is not None
    return str(row["id"])
