"""Provider budgets in SQL (migration 0016): reservations counted atomically across connections, a change at psql
read by the very next reservation, the actual usage replacing the estimate, the provider's headers and 429s
shrinking the budget (which recovers), and a waiting task back in the queue, saying why, woken by a change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg

from bgtasks import db
from tests.integration.apiclient import running_api
from tests.rows import one

P = "http://provider.test/v1"

Conn = psycopg.Connection[dict[str, Any]]


def reserve(sql: Conn, estimate: int = 10, model: str = "m", task: str | None = None) -> dict[str, Any]:
    return one(sql, "SELECT * FROM reserve_provider_budget(%s, %s, %s, %s, 30)", (P, model, task, estimate))


def settle(sql: Conn, reservation: int, used: int | None = None, rate_limited: bool = False,
           retry_after: float | None = None, requests_left: int | None = None, reset_s: float | None = None,
           tokens_left: int | None = None) -> None:
    sql.execute("SELECT settle_provider_budget(%s, %s, %s, %s, %s, %s, %s, %s, 0)",
                (reservation, used, rate_limited, retry_after, requests_left, reset_s, tokens_left, reset_s))


def test_no_budget_lets_every_call_through_uncounted(sql: Conn) -> None:
    row = reserve(sql)
    assert row["reservation_id"] is None and row["wait_seconds"] == 0 and row["budget_provider"] is None


def test_requests_per_minute_is_never_exceeded_by_concurrent_reservations(sql: Conn, database_url: str) -> None:
    sql.execute("INSERT INTO provider_budgets (provider, requests_per_minute) VALUES (%s, 5)", (P,))
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def one_call() -> None:
        with db.sync_connect(database_url) as conn:
            start.wait()
            row = reserve(conn)
            with lock:
                results.append(row)

    threads = [threading.Thread(target=one_call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    granted = [r for r in results if r["reservation_id"] is not None]
    waiting = [r for r in results if r["reservation_id"] is None]
    assert len(granted) == 5 and len(waiting) == 15
    assert all(r["wait_seconds"] > 0 and "5 requests per 60 s" in r["limited_by"] for r in waiting)
    assert all(r["budget_provider"] == P and r["budget_model"] == "*" for r in results)
    usage = one(sql, "SELECT requests_counted, waits FROM provider_budget_usage")
    assert usage == {"requests_counted": 5, "waits": 15}


def test_a_change_at_psql_applies_to_the_next_reservation(sql: Conn) -> None:
    sql.execute("INSERT INTO provider_budgets (provider, model, requests_per_minute) VALUES (%s, 'm', 1)", (P,))
    assert reserve(sql)["reservation_id"] is not None
    assert reserve(sql)["reservation_id"] is None
    sql.execute("UPDATE provider_budgets SET requests_per_minute = 3 WHERE provider = %s", (P,))
    assert reserve(sql)["reservation_id"] is not None
    assert reserve(sql)["reservation_id"] is not None
    assert reserve(sql)["reservation_id"] is None
    # Another model of the provider has no row of its own and no '*' row: not limited.
    assert reserve(sql, model="other")["budget_provider"] is None
    sql.execute("DELETE FROM provider_budgets")
    assert reserve(sql)["budget_provider"] is None


def test_tokens_count_the_estimate_until_the_call_reports_its_usage(sql: Conn) -> None:
    sql.execute("INSERT INTO provider_budgets (provider, tokens_per_minute) VALUES (%s, 1000)", (P,))
    first = reserve(sql, estimate=600)
    assert first["reservation_id"] is not None
    blocked = reserve(sql, estimate=600)
    assert blocked["reservation_id"] is None and "1000 tokens per 60 s in effect, 600 counted" in blocked["limited_by"]
    settle(sql, first["reservation_id"], used=150)  # the answer was short: 150 tokens in all
    assert one(sql, "SELECT tokens_counted FROM provider_budget_usage")["tokens_counted"] == 150
    assert reserve(sql, estimate=600)["reservation_id"] is not None
    # A call larger than the whole budget is let through when it would fit an empty window, never forever held.
    sql.execute("DELETE FROM provider_budget_reservations")
    assert reserve(sql, estimate=5000)["reservation_id"] is not None


def test_a_429_shrinks_the_budget_and_it_recovers_over_a_window(sql: Conn) -> None:
    sql.execute("INSERT INTO provider_budgets (provider, requests_per_minute, window_seconds) VALUES (%s, 100, 60)",
                (P,))
    r = reserve(sql)["reservation_id"]
    settle(sql, r, rate_limited=True, retry_after=2)
    b = one(sql, "SELECT shrink_factor, rate_limited, blocked_until > now() AS blocked FROM provider_budgets")
    assert b == {"shrink_factor": 0.5, "rate_limited": 1, "blocked": True}
    held = reserve(sql)
    assert held["reservation_id"] is None and "429" in held["limited_by"] and 0 < held["wait_seconds"] <= 2
    shares = one(sql, """SELECT provider_budget_factor(b, b.shrunk_at) AS at_once,
                                provider_budget_factor(b, b.shrunk_at + interval '30 s') AS half_a_window_later,
                                provider_budget_factor(b, b.shrunk_at + interval '60 s') AS a_window_later
                         FROM provider_budgets b""")
    assert shares == {"at_once": 0.5, "half_a_window_later": 0.75, "a_window_later": 1.0}
    usage = one(sql, "SELECT requests_in_effect FROM provider_budget_usage")
    assert 50 <= usage["requests_in_effect"] < 100
    # A second 429 among calls in flight together is the same signal: no second halving at once.
    settle(sql, r, rate_limited=True)
    assert one(sql, "SELECT shrink_factor FROM provider_budgets")["shrink_factor"] == 0.5
    # An operator's new numbers start whole.
    sql.execute("UPDATE provider_budgets SET requests_per_minute = 200")
    assert one(sql, "SELECT shrink_factor FROM provider_budgets")["shrink_factor"] == 1


def test_the_providers_remaining_count_holds_calls_until_its_reset(sql: Conn) -> None:
    sql.execute("INSERT INTO provider_budgets (provider, requests_per_minute) VALUES (%s, 100)", (P,))
    r = reserve(sql)["reservation_id"]
    settle(sql, r, used=10, requests_left=1, reset_s=5)  # the provider allows one more before its reset
    assert reserve(sql)["reservation_id"] is not None
    held = reserve(sql)
    assert held["reservation_id"] is None and "x-ratelimit-remaining-requests" in held["limited_by"]
    assert 0 < held["wait_seconds"] <= 5


def test_a_waiting_task_is_back_in_the_queue_says_why_and_wakes_when_the_budget_changes(sql: Conn) -> None:
    sql.execute("INSERT INTO provider_budgets (provider, requests_per_minute) VALUES (%s, 1)", (P,))
    task = one(sql, "INSERT INTO background_tasks (task_type, user_id) VALUES ('noop', 'u') RETURNING id")["id"]
    one(sql, "SELECT * FROM claim_tasks('w1', 1, 30)")
    attempt = one(sql, "SELECT attempt FROM background_tasks WHERE id = %s", (task,))["attempt"]
    assert reserve(sql)["reservation_id"] is not None  # someone else's call fills the budget
    held = reserve(sql, task=task)
    assert held["reservation_id"] is None
    status = one(sql, "SELECT postpone_for_budget(%s, %s, %s, '*', %s, 'no room')::text AS s",
                 (task, attempt, P, held["wait_seconds"]))["s"]
    assert status == "pending"
    row = one(sql, "SELECT retry_count, description, task_waiting_reason(t) AS why FROM background_tasks t "
                   "WHERE id = %s", (task,))
    assert row["retry_count"] == 0 and row["description"].startswith("Waiting for the provider's budget")
    assert row["why"]["reason"] == "provider_budget" and row["why"]["provider"] == P
    assert row["why"]["text"].startswith(f"waiting for the provider's budget (provider_budgets {P}, model *)")
    outcome = one(sql, "SELECT outcome FROM task_attempt_errors WHERE task_id = %s", (task,))["outcome"]
    assert outcome == "budget_wait"
    assert one(sql, "SELECT tasks_waiting FROM provider_budget_usage")["tasks_waiting"] == 1
    sql.execute("UPDATE provider_budgets SET requests_per_minute = 10")
    woke = one(sql, "SELECT run_at <= now() AS due, description FROM background_tasks WHERE id = %s", (task,))
    assert woke == {"due": True, "description": "The provider's budget changed: runs again now"}
    assert one(sql, "SELECT tasks_waiting FROM provider_budget_usage")["tasks_waiting"] == 0


def test_later_waiters_are_given_later_turns(sql: Conn) -> None:
    sql.execute("INSERT INTO provider_budgets (provider, requests_per_minute, window_seconds) VALUES (%s, 2, 10)",
                (P,))
    for _ in range(2):
        settle(sql, reserve(sql)["reservation_id"], used=1)
    turns = []
    for _ in range(3):
        task = one(sql, "INSERT INTO background_tasks (task_type, user_id) VALUES ('noop', 'u') RETURNING id")["id"]
        held = reserve(sql, task=task)
        turns.append(held["wait_seconds"])
        sql.execute("INSERT INTO provider_budget_waits (task_id, provider, model, until) "
                    "VALUES (%s, %s, '*', now() + make_interval(secs => %s))", (task, P, held["wait_seconds"]))
    # Two slots free about 10 s from now, one for each of the first two waiters; the third waiter's turn is a
    # window after the first slot frees again.
    assert 5 < turns[0] <= 10 and 5 < turns[1] <= 10 and 15 < turns[2] <= 20


async def test_superusers_set_read_and_remove_budgets_over_http_and_metrics_show_them(
        database_url: str, tmp_path: Path, sql: Conn) -> None:
    async with running_api(database_url, tmp_path) as api:
        ann, root = await api.key("ann"), await api.key("root", superuser=True)
        body = {"provider": P + "/", "requestsPerMinute": 30, "tokensPerMinute": 9000}
        assert (await api.client.put("/api/provider-budgets", headers=ann, json=body)).status_code == 403
        assert (await api.client.get("/api/provider-budgets", headers=ann)).status_code == 403
        for bad, field in (({"requestsPerMinute": 3}, "provider"), ({**body, "requestsPerMinute": 0}, "requestsPerMinute"),
                           ({**body, "windowSeconds": 0}, "windowSeconds"), ({**body, "nope": 1}, "nope"),
                           ({"provider": P}, "body"), ({**body, "tokensPerMinute": "9"}, "tokensPerMinute")):
            r = await api.client.put("/api/provider-budgets", headers=root, json=bad)
            assert r.status_code == 422 and r.json()["field"] == field, (bad, r.text)
        r = await api.client.put("/api/provider-budgets", headers=root, json=body)
        assert r.status_code == 200, r.text
        budget = r.json()["budget"]
        assert (budget["provider"], budget["model"], budget["requestsPerMinute"], budget["windowSeconds"]) == (
            P, "*", 30, 60)
        settle(sql, reserve(sql, estimate=100)["reservation_id"], used=40)
        [listed] = (await api.client.get("/api/provider-budgets", headers=root)).json()["budgets"]
        assert listed["counted"] == {"requests": 1, "tokens": 40} and listed["inEffect"]["requestsPerMinute"] == 30

        text = (await api.client.get("/metrics", headers=root)).text
        assert f'bgtasks_provider_budget_limit{{kind="requests",model="*",provider="{P}"}} 30.0' in text
        assert f'bgtasks_provider_budget_counted{{kind="tokens",model="*",provider="{P}"}} 40.0' in text
        assert f'bgtasks_provider_budget_waits_total{{model="*",provider="{P}"}} 0.0' in text

        missing = await api.client.delete("/api/provider-budgets", headers=root)
        assert missing.status_code == 422 and missing.json()["field"] == "provider"
        gone = await api.client.delete("/api/provider-budgets", headers=root, params={"provider": P})
        assert gone.status_code == 200 and gone.json()["deleted"] == {"provider": P, "model": "*"}
        again = await api.client.delete("/api/provider-budgets", headers=root, params={"provider": P})
        assert again.status_code == 404


def test_budgets_command_sets_lists_and_removes(database_url: str, sql: Conn) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGTASKS_")}
    env["DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bgtasks.cli", "budgets", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    done = run("set", P, "--model", "gpt-x", "--rpm", "20", "--window", "2", "--json")
    assert done.returncode == 0, done.stderr
    [shown] = json.loads(done.stdout)
    assert (shown["requests_per_minute"], shown["tokens_per_minute"], shown["window_seconds"]) == (20, None, 2)
    assert one(sql, "SELECT requests_per_minute FROM provider_budgets WHERE model = 'gpt-x'")["requests_per_minute"] == 20
    listed = run("ls")
    assert listed.returncode == 0 and P in listed.stdout and "gpt-x" in listed.stdout
    bad = run("set", P, "--rpm", "zero")
    assert bad.returncode == 2 and "--rpm" in bad.stderr
    assert run("rm", P, "--model", "gpt-x").returncode == 0
    assert run("rm", P, "--model", "gpt-x").returncode == 3
