"""GET /metrics' numbers come from the database at scrape time: totals from task_counts, the queue from
queue_health, and the recent window from finished rows, attempt errors and model calls."""

from __future__ import annotations

from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from bgtasks.metrics import collect, render
from tests.rows import one


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_reflect_the_tables(sql: psycopg.Connection[Any], pool: Any) -> None:
    sql.execute("""
        INSERT INTO background_tasks (task_type, user_id, status, created_at, run_at, started_at, completed_at)
        VALUES ('docs', 'a', 'completed', now() - interval '20 s', now() - interval '20 s',
                now() - interval '19.8 s', now() - interval '10 s'),
               ('docs', 'a', 'completed', now() - interval '20 s', now() - interval '20 s',
                now() - interval '17 s', now() - interval '16 s'),
               ('docs', 'b', 'error', now() - interval '9 s', now() - interval '9 s',
                now() - interval '8.99 s', now() - interval '8 s'),
               ('docs', 'b', 'completed', now() - interval '2 days', now() - interval '2 days',
                now() - interval '2 days', now() - interval '2 days')""")
    sql.execute("INSERT INTO background_tasks (task_type, user_id) VALUES ('generation', 'a'), ('generation', 'a')")
    failed = one(sql, "SELECT id FROM background_tasks WHERE status = 'error'")["id"]  # type: ignore[index]
    sql.execute("INSERT INTO task_attempt_errors (task_id, attempt, error_type, error_message, outcome) VALUES "
                "(%s, 1, 'E', 'x', 'retried'), (%s, 2, 'E', 'x', 'failed')", (failed, failed))
    sql.execute("INSERT INTO task_model_calls (task_id, user_id, task_type, attempt, model, prompt_tokens, "
                "completion_tokens, total_tokens, duration_ms) VALUES "
                "('t', 'a', 'docs', 1, 'gpt-x', 100, 40, 140, 1500), ('t', 'a', 'docs', 1, 'gpt-x', 10, 4, 14, 500)")
    sql.execute("UPDATE task_model_calls SET cost_usd = model_call_cost('gpt-4o-mini', prompt_tokens, 0, "
                "completion_tokens)")
    sql.execute("SELECT set_concurrency_limit(4)")

    s = _samples(render(await collect(pool)).decode())

    assert s[("bgtasks_tasks", (("status", "completed"), ("task_type", "docs")))] == 3
    assert s[("bgtasks_tasks", (("status", "pending"), ("task_type", "generation")))] == 2
    assert s[("bgtasks_queue_active", ())] == 1 and s[("bgtasks_queue_max_concurrent_tasks", ())] == 4
    assert s[("bgtasks_queue_pending_due", ())] == 2 and s[("bgtasks_queue_running", ())] == 0
    assert s[("bgtasks_queue_oldest_due_seconds", ())] >= 0

    run = (("status", "completed"), ("task_type", "docs"))
    # Completed in the window: 9.8 s and 1 s runs (the 2-day-old one is outside it).
    assert s[("bgtasks_recent_run_duration_seconds_bucket", (("le", "+Inf"), *run))] == 2
    assert s[("bgtasks_recent_run_duration_seconds_bucket", (("le", "5.0"), *run))] == 1
    assert s[("bgtasks_recent_run_duration_seconds_bucket", (("le", "0.5"), *run))] == 0
    assert abs(s[("bgtasks_recent_run_duration_seconds_gsum", run)] - 10.8) < 0.01
    claim = (("le", "0.25"), ("task_type", "docs"))
    assert s[("bgtasks_recent_claim_latency_seconds_bucket", claim)] == 2  # 0.2 s and 0.01 s; the 3 s one is not
    assert s[("bgtasks_recent_finished_tasks", (("status", "error"), ("task_type", "docs")))] == 1
    assert s[("bgtasks_recent_attempt_errors", (("outcome", "retried"), ("task_type", "docs")))] == 1
    assert s[("bgtasks_recent_attempt_errors", (("outcome", "failed"), ("task_type", "docs")))] == 1
    assert s[("bgtasks_recent_model_calls", (("model", "gpt-x"), ("task_type", "docs")))] == 2
    assert s[("bgtasks_recent_model_tokens", (("kind", "prompt"), ("model", "gpt-x"), ("task_type", "docs")))] == 110
    assert s[("bgtasks_recent_model_tokens", (("kind", "completion"), ("model", "gpt-x"),
                                              ("task_type", "docs")))] == 44
    assert s[("bgtasks_recent_model_call_seconds", (("model", "gpt-x"), ("task_type", "docs")))] == 2.0
    # 110 prompt tokens at gpt-4o-mini's default 0.15 and 44 completion tokens at 0.60 per million
    usd = s[("bgtasks_recent_model_cost_usd", (("model", "gpt-x"), ("task_type", "docs")))]
    assert abs(usd - (110 * 0.15 + 44 * 0.60) / 1e6) < 1e-12


async def test_metrics_need_a_key_or_the_metrics_token_outside_dev_mode(database_url: str, tmp_path: Any) -> None:
    from tests.integration.apiclient import running_api

    token = "scrape-" + "x" * 24
    async with running_api(database_url, tmp_path, bgtasks_metrics_token=token) as api:
        r = await api.client.get("/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "BGTASKS_METRICS_TOKEN" in r.json()["error"] and r.json()["success"] is False
        wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer " + "y" * 31})
        assert wrong.status_code == 401
        scraped = await api.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200 and "bgtasks_queue_active" in scraped.text
        plain_key = await api.key("alice")
        assert (await api.client.get("/metrics", headers=plain_key)).status_code == 200
    # Dev mode on loopback: the local superuser scrapes without credentials.
    async with running_api(database_url, tmp_path, client_host="127.0.0.1", bgtasks_dev=True,
                           base_url="http://127.0.0.1:8000") as api:
        assert (await api.client.get("/metrics")).status_code == 200


async def test_recent_histograms_come_from_counters_kept_as_tasks_finish(
    sql: psycopg.Connection[Any], pool: Any
) -> None:
    def finish_one() -> None:
        [row] = sql.execute("INSERT INTO background_tasks (task_type, user_id) VALUES ('noop', 'a') RETURNING id")
        sql.execute("UPDATE background_tasks SET status = 'processing', started_at = now(), attempt = 1, "
                    "lease_expires_at = now() + interval '30 s' WHERE id = %s", (row["id"],))
        sql.execute("UPDATE background_tasks SET status = 'completed' WHERE id = %s", (row["id"],))

    async def finished() -> float:
        s = _samples(render(await collect(pool)).decode())
        return s.get(("bgtasks_recent_finished_tasks", (("status", "completed"), ("task_type", "noop"))), 0.0)

    with sql.transaction():  # one now(): both in one bin
        finish_one()
        finish_one()
    # The counters are the truth, not the rows: moving the rows' times changes nothing.
    sql.execute("UPDATE background_tasks SET completed_at = now() - interval '1 day'")
    assert await finished() == 2
    assert one(sql, "SELECT sum(n) AS n FROM task_finish_stats WHERE metric = 'run'")["n"] == 2
    # A bin older than the window is not shown.
    sql.execute("UPDATE task_finish_stats SET bin_start = bin_start - interval '640 seconds'")
    assert await finished() == 0
    # Its slot of the ring, when it comes round, starts from zero. In one transaction, so now() (and the bin
    # the task finishes in) cannot move on between the two statements.
    with sql.transaction():
        sql.execute("UPDATE task_finish_stats SET bin_start = date_bin('10 s', now(), 'epoch') - interval '640 s', "
                    "slot = extract(epoch FROM date_bin('10 s', now(), 'epoch'))::bigint / 10 % 64")
        finish_one()
    assert await finished() == 1
    assert one(sql, "SELECT sum(n) AS n FROM task_finish_stats WHERE metric = 'run'")["n"] == 1
