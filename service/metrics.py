"""GET /metrics in the Prometheus text format, computed from the database at scrape time.

Worker processes are separate and short-lived, so no in-process counter can be the truth: every number here
is read from tables the queue already keeps, cheaply. Totals come from task_counts (trigger-kept, no scan);
the queue's state from queue_health (partial indexes); durations, latencies, failures, retries and model
tokens from the last WINDOW_S seconds: histograms of finished tasks from task_finish_stats (kept by the update
trigger in 10-second bins, so a scrape costs the same at any finish rate), attempt errors and model calls
(time-indexed). Those are gauges over a sliding window ("in the last 5 minutes"), not counters: read them as
they are, do not rate() them. Every API instance answers the same numbers; scrape one. docs/operations.md has the list.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from .api.auth import authenticate_scrape
from .store import budgets as budget_store
from .store import operations as store

WINDOW_S = 300.0


class _Snapshot(Collector):
    """The families of one scrape, computed beforehand (the collector API is synchronous, our driver is not)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _histograms(rows: Iterable[Any], buckets: Sequence[float]) -> list[Metric]:
    """Rows of (task_type, status, metric, bucket index, n, total) into cumulative gauge histograms; `buckets`:
    the upper bounds the indexes count (task_metrics_bucket_bounds() in SQL)."""
    run = GaugeHistogramMetricFamily(
        "bgtasks_recent_run_duration_seconds",
        f"Run time (claim to finish, last attempt) of tasks that finished in the last {WINDOW_S:g}s",
        labels=["task_type", "status"])
    claim = GaugeHistogramMetricFamily(
        "bgtasks_recent_claim_latency_seconds",
        f"Due (run_at) to claimed, of tasks that finished in the last {WINDOW_S:g}s: how fast workers pick up "
        "work that is ready", labels=["task_type"])
    pickup = GaugeHistogramMetricFamily(
        "bgtasks_recent_pickup_latency_seconds",
        f"Created to claimed (last attempt, so delays and retries count), of tasks that finished in the last "
        f"{WINDOW_S:g}s", labels=["task_type"])
    families = {"run": run, "claim": claim, "pickup": pickup}
    bounds = [*buckets, math.inf]
    counts: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(lambda: [0] * len(bounds))
    sums: dict[tuple[str, tuple[str, ...]], float] = defaultdict(float)
    for r in rows:
        labels: tuple[str, ...] = (r["task_type"], r["status"]) if r["metric"] == "run" else (r["task_type"],)
        key = (r["metric"], labels)
        counts[key][min(int(r["bucket"]), len(bounds) - 1)] += int(r["n"])
        sums[key] += float(r["total"] or 0.0)
    for (metric, labels), per_bucket in sorted(counts.items()):
        cumulative, running = [], 0
        for bound, n in zip(bounds, per_bucket, strict=True):
            running += n
            cumulative.append((_le(bound), float(running)))
        families[metric].add_metric(list(labels), cumulative, sums[(metric, labels)])
    return [run, claim, pickup]


async def collect(pool: Any) -> list[Metric]:
    """Every family, from six cheap queries."""
    tasks = GaugeMetricFamily("bgtasks_tasks", "Tasks in the table by type and status (from task_counts)",
                              labels=["task_type", "status"])
    for r in await store.metrics_task_counts(pool):
        tasks.add_metric([r["task_type"], r["status"]], float(r["n"]))
    families: list[Metric] = [tasks]

    health = await store.metrics_queue_health(pool)
    if health is not None:
        def gauge(name: str, doc: str, value: Any) -> None:
            if value is not None:
                families.append(GaugeMetricFamily(name, doc, value=float(value)))

        gauge("bgtasks_queue_active", "1 when the queue is started (is_active), 0 when stopped", health["is_active"])
        gauge("bgtasks_queue_max_concurrent_tasks", "Global limit on processing tasks (absent: no limit)",
              health["max_concurrent_tasks"])
        gauge("bgtasks_queue_running", "Tasks processing now", health["running"])
        gauge("bgtasks_queue_stuck", "Processing tasks whose lease expired (worker gone)", health["stuck"])
        gauge("bgtasks_queue_pending_due", "Pending tasks due now and not waiting on dependencies",
              health["pending_due"])
        gauge("bgtasks_queue_oldest_due_seconds", "How long the longest-waiting due task has waited (0: none)",
              health["oldest_due_waiting_s"] or 0.0)
        gauge("bgtasks_workers_live", "Worker processes with a recent heartbeat", health["live_workers"])
        gauge("bgtasks_workers_capacity", "Sum of the live workers' concurrency", health["live_capacity"])
        gauge("bgtasks_workers_silent", "Workers that stopped heartbeating without stopping cleanly",
              health["silent_workers"])

    buckets = await store.metrics_finished_buckets(pool, WINDOW_S)
    families += _histograms(buckets, await store.metrics_bucket_bounds(pool))

    finished = GaugeMetricFamily(
        "bgtasks_recent_finished_tasks", f"Tasks that finished in the last {WINDOW_S:g}s by type and status "
        "(status error: failures)", labels=["task_type", "status"])
    per_status: dict[tuple[str, str], float] = defaultdict(float)
    for r in buckets:
        if r["metric"] == "run":
            per_status[(r["task_type"], r["status"])] += float(r["n"])
    for labels, n in sorted(per_status.items()):
        finished.add_metric(list(labels), n)
    families.append(finished)

    attempts = GaugeMetricFamily(
        "bgtasks_recent_attempt_errors", f"Failed attempts in the last {WINDOW_S:g}s by outcome: retried "
        "(a retry follows), failed (the task ended in error), lease_expired (its worker died)",
        labels=["task_type", "outcome"])
    for r in await store.metrics_attempt_errors(pool, WINDOW_S):
        attempts.add_metric([r["task_type"], r["outcome"]], float(r["n"]))
    families.append(attempts)

    calls = GaugeMetricFamily("bgtasks_recent_model_calls", f"Model calls in the last {WINDOW_S:g}s",
                              labels=["task_type", "model"])
    tokens = GaugeMetricFamily("bgtasks_recent_model_tokens", f"Model tokens in the last {WINDOW_S:g}s",
                               labels=["task_type", "model", "kind"])
    call_seconds = GaugeMetricFamily("bgtasks_recent_model_call_seconds",
                                     f"Total wall time of model calls in the last {WINDOW_S:g}s",
                                     labels=["task_type", "model"])
    cost = GaugeMetricFamily("bgtasks_recent_model_cost_usd",
                             f"What model calls cost in the last {WINDOW_S:g}s, in US dollars (model_prices)",
                             labels=["task_type", "model"])
    for r in await store.metrics_model_usage(pool, WINDOW_S):
        calls.add_metric([r["task_type"], r["model"]], float(r["calls"]))
        tokens.add_metric([r["task_type"], r["model"], "cached_prompt"], float(r["cached_prompt_tokens"] or 0))
        if r["cost_usd"] is not None:  # an unpriced model has no cost, not a cost of 0
            cost.add_metric([r["task_type"], r["model"]], float(r["cost_usd"]))
        tokens.add_metric([r["task_type"], r["model"], "prompt"], float(r["prompt_tokens"] or 0))
        tokens.add_metric([r["task_type"], r["model"], "completion"], float(r["completion_tokens"] or 0))
        call_seconds.add_metric([r["task_type"], r["model"]], float(r["duration_ms"] or 0) / 1000)
    families += await _budgets(pool)
    families += [calls, tokens, call_seconds, cost,
                 GaugeMetricFamily("bgtasks_metrics_window_seconds",
                                   "The sliding window of the bgtasks_recent_* metrics", value=WINDOW_S)]
    return families


async def _budgets(pool: Any) -> list[Metric]:
    """Provider budgets (provider_budget_usage: a row per budget, its reservations of one window)."""
    labels = ["provider", "model", "kind"]
    limit = GaugeMetricFamily("bgtasks_provider_budget_limit",
                              "A provider budget's limit per window (kind requests or tokens) as configured",
                              labels=labels)
    in_effect = GaugeMetricFamily("bgtasks_provider_budget_in_effect",
                                  "A provider budget's limit in effect: the configured one shrunk after 429s",
                                  labels=labels)
    counted = GaugeMetricFamily("bgtasks_provider_budget_counted",
                                "Requests and tokens counted against a provider budget in its current window",
                                labels=labels)
    waiting = GaugeMetricFamily("bgtasks_provider_budget_tasks_waiting",
                                "Tasks back in the queue waiting for a provider budget", labels=labels[:2])
    waits = CounterMetricFamily("bgtasks_provider_budget_waits",
                                "Times a task was sent back to the queue to wait for a provider budget",
                                labels=labels[:2])
    limited = CounterMetricFamily("bgtasks_provider_budget_rate_limited",
                                  "Calls under a provider budget the provider still answered with 429",
                                  labels=labels[:2])
    for r in await budget_store.list_all(pool):
        key = [r["provider"], r["model"]]
        for kind in ("requests", "tokens"):
            if r[f"{kind}_per_minute"] is not None:
                limit.add_metric([*key, kind], float(r[f"{kind}_per_minute"]))
                in_effect.add_metric([*key, kind], float(r[f"{kind}_in_effect"]))
            counted.add_metric([*key, kind], float(r[f"{kind}_counted"] or 0))
        waiting.add_metric(key, float(r["tasks_waiting"]))
        waits.add_metric(key, float(r["waits"]))
        limited.add_metric(key, float(r["rate_limited"]))
    return [limit, in_effect, counted, waiting, waits, limited]


def render(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)


async def metrics(request: Request) -> Response:
    """Prometheus scrape endpoint: any API key, or BGTASKS_METRICS_TOKEN, as Bearer (dev mode: none)."""
    await authenticate_scrape(request)
    families = await collect(request.app.state.pool)
    return Response(render(families), media_type=CONTENT_TYPE_LATEST)
