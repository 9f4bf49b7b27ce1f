-- Operations: retention (one process at a time) and the numbers behind GET /metrics. None of them counts
-- over the whole task table: task_counts for totals, partial indexes and short time windows for the rest.

-- name: purge_finished_tasks
-- Delete at most $2 finished tasks that finished more than $1 seconds ago, oldest first; returns how many.
SELECT purge_finished_tasks(make_interval(secs => $1::double precision), $2::integer) AS n;

-- name: count_purgeable_tasks
-- How many finished tasks finished more than $1 seconds ago (what retention would delete).
SELECT count(*) AS n FROM background_tasks
WHERE status IN ('completed', 'error', 'cancelled')
  AND completed_at < now() - make_interval(secs => $1::double precision);

-- name: try_retention_lock
-- Take the session lock that lets one process at a time run retention; false when another holds it.
SELECT pg_try_advisory_lock(hashtext('bgtasks.retention')) AS locked;

-- name: release_retention_lock
-- Give the retention lock back.
SELECT pg_advisory_unlock(hashtext('bgtasks.retention')) AS released;

-- name: metrics_task_counts
-- Tasks by type and status from the trigger-kept task_counts.
SELECT task_type, status::text AS status, sum(n)::bigint AS n FROM task_counts
GROUP BY task_type, status HAVING sum(n) <> 0;

-- name: metrics_queue_health
-- The queue_health view's one row (settings, running, due, oldest due wait, workers).
SELECT is_active, max_concurrent_tasks, running, stuck, pending_due,
       extract(epoch FROM oldest_due_waiting)::double precision AS oldest_due_waiting_s,
       live_workers, live_capacity, silent_workers
FROM queue_health;

-- name: metrics_finished_buckets
-- Tasks that finished in the last $1 seconds (to the 10-second bin), per type, status and bucket of run time,
-- claim latency (due -> claimed) and pickup latency (created -> claimed), with each bucket's sum: from the
-- trigger-kept task_finish_stats, never the task table. The buckets' bounds: metrics_bucket_bounds.
SELECT task_type, status::text AS status, metric, bucket, sum(n)::bigint AS n, sum(total_s) AS total
FROM task_finish_stats
WHERE bin_start > now() - make_interval(secs => $1::double precision)
GROUP BY 1, 2, 3, 4;

-- name: metrics_bucket_bounds
-- The histogram buckets' upper bounds (seconds, ascending) that task_finish_stats counts by.
SELECT task_metrics_bucket_bounds() AS bounds;

-- name: metrics_attempt_errors
-- Failed attempts in the last $1 seconds by task type and outcome (retried, failed, lease_expired).
SELECT coalesce(t.task_type, 'unknown') AS task_type, e.outcome, count(*) AS n
FROM task_attempt_errors e LEFT JOIN background_tasks t ON t.id = e.task_id
WHERE e.failed_at >= now() - make_interval(secs => $1::double precision)
GROUP BY 1, 2;

-- name: metrics_model_usage
-- Model calls, tokens and cost (USD; priced calls only) in the last $1 seconds by task type and model.
SELECT task_type, model, count(*) AS calls, sum(prompt_tokens)::bigint AS prompt_tokens,
       sum(completion_tokens)::bigint AS completion_tokens, sum(duration_ms)::bigint AS duration_ms,
       sum(cached_prompt_tokens)::bigint AS cached_prompt_tokens, sum(cost_usd) AS cost_usd
FROM task_model_calls
WHERE created_at >= now() - make_interval(secs => $1::double precision)
GROUP BY 1, 2;
