-- Operations at the SQL console: functions that do what the API does (same state checks, same triggers,
-- so the same NOTIFY and history), the retention step, and views for what operators ask every day.
-- docs/operations.md shows each with examples.

-- ---------------------------------------------------------------------------------------------------------
-- Functions. Each is one statement's worth of work: the row triggers of 0001 check the move, stamp the
-- times and change number, keep task_counts and NOTIFY bgtasks_tasks (or bgtasks_queue for settings).

CREATE FUNCTION enqueue_task(
    task_type text,
    user_id text,
    payload jsonb DEFAULT '{}'::jsonb,
    priority integer DEFAULT 0,
    max_retries integer DEFAULT 3,
    project_id text DEFAULT NULL,
    project_name text DEFAULT NULL,
    project_path text DEFAULT NULL,
    label text DEFAULT NULL,
    description text DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    idempotency_key text DEFAULT NULL
) RETURNS background_tasks LANGUAGE plpgsql AS $$
DECLARE
    t background_tasks;
BEGIN
    INSERT INTO background_tasks AS b (task_type, user_id, payload, priority, max_retries, project_id,
                                       project_name, project_path, label, description, run_at,
                                       idempotency_key)
    VALUES (enqueue_task.task_type, enqueue_task.user_id, coalesce(enqueue_task.payload, '{}'::jsonb),
            coalesce(enqueue_task.priority, 0), coalesce(enqueue_task.max_retries, 3),
            enqueue_task.project_id, enqueue_task.project_name, enqueue_task.project_path,
            enqueue_task.label, enqueue_task.description, coalesce(enqueue_task.run_at, now()),
            enqueue_task.idempotency_key)
    ON CONFLICT DO NOTHING
    RETURNING * INTO t;
    IF FOUND THEN
        RETURN t;
    END IF;
    -- Only the unique indexes can make the insert do nothing: a repeated idempotency key returns the first
    -- task, as a repeated Idempotency-Key header does at the API.
    SELECT * INTO t FROM background_tasks b
    WHERE b.user_id = enqueue_task.user_id AND b.idempotency_key = enqueue_task.idempotency_key;
    RETURN t;
END
$$;
COMMENT ON FUNCTION enqueue_task(text, text, jsonb, integer, integer, text, text, text, text, text, timestamptz,
                                 text) IS
  'Create a task as POST /api/tasks does (the insert trigger notifies workers and live streams at once); returns the row. A repeated (user_id, idempotency_key) returns the first task. Unlike the API it does not check the payload against the type''s schema: a worker fails a task whose type it does not serve.';

CREATE FUNCTION clear_completed(user_id text DEFAULT NULL, project_id text DEFAULT NULL) RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM background_tasks b
        WHERE b.status = 'completed'
          AND (clear_completed.user_id IS NULL OR b.user_id = clear_completed.user_id)
          AND (clear_completed.project_id IS NULL OR b.project_id = clear_completed.project_id)
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;
COMMENT ON FUNCTION clear_completed(text, text) IS
  'Seed one''s clear-completed: delete the completed tasks (of one user and/or project; NULL: all); returns how many. For old finished tasks in bulk, purge_finished_tasks() deletes in small batches.';

CREATE FUNCTION pause_queue() RETURNS task_queue_settings LANGUAGE sql AS $$
    UPDATE task_queue_settings SET is_active = false WHERE id = 1 RETURNING *
$$;
COMMENT ON FUNCTION pause_queue() IS
  'Stop the queue (seed one''s stop): no worker claims a new task from the next claim on; running tasks finish. NOTIFYs bgtasks_queue.';

CREATE FUNCTION resume_queue() RETURNS task_queue_settings LANGUAGE sql AS $$
    UPDATE task_queue_settings SET is_active = true WHERE id = 1 RETURNING *
$$;
COMMENT ON FUNCTION resume_queue() IS
  'Start the queue (seed one''s start): workers wake on the NOTIFY and claim at once.';

CREATE FUNCTION set_concurrency_limit(n integer) RETURNS task_queue_settings LANGUAGE plpgsql AS $$
DECLARE
    s task_queue_settings;
BEGIN
    IF n < 0 THEN
        RAISE EXCEPTION 'concurrency limit must be 0 or more (NULL: no limit), not %', n
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE task_queue_settings SET max_concurrent_tasks = n WHERE id = 1 RETURNING * INTO s;
    RETURN s;
END
$$;
COMMENT ON FUNCTION set_concurrency_limit(integer) IS
  'Most tasks processing at once over every worker (NULL: no limit; 0 holds everything). Enforced at the next claim; running tasks are never stopped by a lower limit.';

-- The retention step. SKIP LOCKED: never waits for a row someone else holds (a retry at the API, another
-- purge). Small batches: each is a short transaction, so claims (which lock other rows and read the claim
-- index) never queue behind it, and the per-statement DELETE trigger sends a few chunked NOTIFYs per batch.
CREATE FUNCTION purge_finished_tasks(older_than interval, batch_size integer DEFAULT 1000) RETURNS integer
LANGUAGE sql AS $$
    WITH doomed AS (
        SELECT id FROM background_tasks
        WHERE status IN ('completed', 'error', 'cancelled') AND completed_at < now() - older_than
        ORDER BY completed_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM background_tasks b USING doomed d WHERE b.id = d.id RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;
COMMENT ON FUNCTION purge_finished_tasks(interval, integer) IS
  'Retention step: delete at most batch_size finished (completed, error, cancelled) tasks that finished more than older_than ago, oldest first; returns how many. Call it again until it returns less than batch_size (the workers do, every minute, on BGTASKS_RETENTION_DAYS). Model usage (task_model_calls) is kept.';

-- Retries and lease losses in a time window (metrics, task_type_stats) without scanning all history.
CREATE INDEX task_attempt_errors_failed_idx ON task_attempt_errors (failed_at);
COMMENT ON INDEX task_attempt_errors_failed_idx IS 'Recent failed attempts: metrics and task_type_stats.';

-- ---------------------------------------------------------------------------------------------------------
-- Views. None of them counts over the whole task table: counts come from task_counts (kept by triggers),
-- the rest read partial indexes (running, claimable, finished by time) or a recent time window.

CREATE VIEW task_status_counts AS
SELECT s.status, coalesce(sum(c.n), 0)::bigint AS tasks
FROM unnest(enum_range(NULL::task_status)) AS s(status)
LEFT JOIN task_counts c ON c.status = s.status
GROUP BY s.status
ORDER BY s.status;
COMMENT ON VIEW task_status_counts IS
  'Tasks by status, every status shown (0 when none), from task_counts: instant at any table size, unlike SELECT status, count(*) FROM background_tasks GROUP BY status.';

CREATE VIEW task_type_counts AS
SELECT task_type,
       coalesce(sum(n) FILTER (WHERE status = 'pending'), 0)::bigint    AS pending,
       coalesce(sum(n) FILTER (WHERE status = 'processing'), 0)::bigint AS processing,
       coalesce(sum(n) FILTER (WHERE status = 'completed'), 0)::bigint  AS completed,
       coalesce(sum(n) FILTER (WHERE status = 'error'), 0)::bigint      AS error,
       coalesce(sum(n) FILTER (WHERE status = 'cancelled'), 0)::bigint  AS cancelled,
       sum(n)::bigint AS total
FROM task_counts
GROUP BY task_type
HAVING sum(n) <> 0
ORDER BY task_type;
COMMENT ON VIEW task_type_counts IS 'Tasks by type, one column per status, from task_counts (no table scan).';

-- Workers count as live while their heartbeat is recent: three default leases (90 s), or what
-- SET bgtasks.worker_stale_after = '30s' says for this session.
CREATE FUNCTION worker_stale_after() RETURNS interval LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('bgtasks.worker_stale_after', true), '')::interval,
                    interval '90 seconds')
$$;
COMMENT ON FUNCTION worker_stale_after() IS
  'How old a worker''s heartbeat may be for it to count as live: 90 s (three default 30 s leases) unless SET bgtasks.worker_stale_after.';

CREATE VIEW queue_health AS
SELECT s.is_active,
       s.max_concurrent_tasks,
       s.poll_interval AS poll_interval_ms,
       (SELECT count(*) FROM background_tasks WHERE status = 'processing') AS running,
       (SELECT count(*) FROM background_tasks WHERE status = 'processing' AND lease_expires_at < now())
           AS stuck,
       (SELECT count(*) FROM background_tasks
        WHERE status = 'pending' AND waiting_for = 0 AND run_at <= now()) AS pending_due,
       (SELECT coalesce(sum(n), 0)::bigint FROM task_counts WHERE status = 'pending') AS pending_total,
       (SELECT now() - min(run_at) FROM background_tasks
        WHERE status = 'pending' AND waiting_for = 0 AND run_at <= now()) AS oldest_due_waiting,
       w.live AS live_workers,
       w.capacity AS live_capacity,
       w.silent AS silent_workers,
       s.last_poll_at,
       now() - s.last_poll_at AS since_last_poll
FROM task_queue_settings s,
     LATERAL (SELECT count(*) FILTER (WHERE heartbeat_at >= now() - worker_stale_after()) AS live,
                     coalesce(sum(concurrency) FILTER (WHERE heartbeat_at >= now() - worker_stale_after()), 0)
                         AS capacity,
                     count(*) FILTER (WHERE heartbeat_at < now() - worker_stale_after()) AS silent
              FROM bgtasks_workers WHERE stopped_at IS NULL) w
WHERE s.id = 1;
COMMENT ON VIEW queue_health IS
  'One row: is the queue running (is_active, limit), how busy (running, pending due now and how long the oldest has waited), stuck tasks (lease expired), live workers (heartbeat within worker_stale_after()) and their capacity, workers that went silent without stopping, and the last poll.';

CREATE VIEW stuck_tasks AS
SELECT t.id, t.task_type, t.user_id, t.worker_id, t.attempt, t.retry_count, t.max_retries, t.started_at,
       t.lease_expires_at, now() - t.lease_expires_at AS overdue,
       w.heartbeat_at AS worker_heartbeat_at,
       (w.stopped_at IS NULL AND w.heartbeat_at >= now() - worker_stale_after()) AS worker_alive
FROM background_tasks t
LEFT JOIN bgtasks_workers w ON w.worker_id = t.worker_id
WHERE t.status = 'processing' AND t.lease_expires_at < now()
ORDER BY t.lease_expires_at;
COMMENT ON VIEW stuck_tasks IS
  'Processing tasks whose lease expired: their worker stopped heartbeating. Any live worker takes them back within BGTASKS_REAP_INTERVAL_S; if rows stay here, no worker is running (see queue_health.live_workers), or run SELECT reap_expired_leases();';

CREATE VIEW task_type_stats AS
WITH finished AS (
    SELECT task_type, status, extract(epoch FROM completed_at - started_at) AS run_s,
           extract(epoch FROM started_at - created_at) AS wait_s
    FROM background_tasks
    WHERE status IN ('completed', 'error', 'cancelled') AND completed_at >= now() - interval '24 hours'
), attempts AS (
    SELECT t.task_type, count(*) AS retried
    FROM task_attempt_errors e JOIN background_tasks t ON t.id = e.task_id
    WHERE e.failed_at >= now() - interval '24 hours' AND e.outcome IN ('retried', 'lease_expired')
    GROUP BY t.task_type
)
SELECT f.task_type,
       count(*) FILTER (WHERE f.status = 'completed') AS completed,
       count(*) FILTER (WHERE f.status = 'error') AS failed,
       count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled,
       coalesce(max(a.retried), 0) AS retried_attempts,
       round((count(*) FILTER (WHERE f.status = 'error'))::numeric
             / nullif(count(*) FILTER (WHERE f.status IN ('completed', 'error')), 0), 3) AS failure_rate,
       round((avg(f.run_s) FILTER (WHERE f.status = 'completed'))::numeric, 3) AS avg_seconds,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY f.run_s)
              FILTER (WHERE f.status = 'completed'))::numeric, 3) AS p95_seconds,
       round((max(f.run_s) FILTER (WHERE f.status = 'completed'))::numeric, 3) AS max_seconds,
       round(avg(f.wait_s)::numeric, 3) AS avg_wait_seconds
FROM finished f
LEFT JOIN attempts a USING (task_type)
GROUP BY f.task_type
ORDER BY failure_rate DESC NULLS LAST, p95_seconds DESC NULLS LAST;
COMMENT ON VIEW task_type_stats IS
  'Per task type over the last 24 hours of finished tasks: completed, failed, cancelled, retried attempts, failure rate (failed / (completed + failed)), run time of completed tasks (avg, p95, max; the last attempt: completed_at - started_at) and wait before the last claim. Most failing first; ORDER BY p95_seconds DESC for the slowest.';

CREATE VIEW usage_by_user AS
SELECT user_id,
       count(DISTINCT task_id) AS tasks,
       count(*) AS model_calls,
       sum(prompt_tokens)::bigint AS prompt_tokens,
       sum(completion_tokens)::bigint AS completion_tokens,
       sum(total_tokens)::bigint AS total_tokens,
       (sum(total_tokens) FILTER (WHERE created_at >= now() - interval '24 hours'))::bigint AS total_tokens_24h,
       round(avg(duration_ms))::integer AS avg_call_ms,
       min(created_at) AS first_call_at,
       max(created_at) AS last_call_at
FROM task_model_calls
GROUP BY user_id
ORDER BY total_tokens DESC;
COMMENT ON VIEW usage_by_user IS
  'Model usage per user from task_model_calls (kept after retention deletes the tasks): calls, tokens all time and in the last 24 hours. For a period: SELECT user_id, sum(total_tokens) FROM task_model_calls WHERE created_at >= ... GROUP BY 1.';
