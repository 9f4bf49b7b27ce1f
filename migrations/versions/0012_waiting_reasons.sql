-- Why is my task still pending? One function answers it for one task row; the API, the dashboard, the CLI
-- and psql (SELECT * FROM pending_tasks_why) all read it, so they agree. It looks at the same things the
-- claim does (claim_tasks() in 0010), in the order an operator would: the queue, the task's own wait
-- (dependencies, run_at), the workers, then the running limits. A new reason is one more block here.

CREATE FUNCTION waiting_duration_text(seconds double precision) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN s < 60 THEN format('%s s', s)
        WHEN s < 3600 THEN format('%s m %s s', s / 60, s % 60)
        WHEN s < 86400 THEN format('%s h %s m', s / 3600, (s % 3600) / 60)
        ELSE format('%s d %s h', s / 86400, (s % 86400) / 3600)
    END
    FROM (SELECT greatest(floor(seconds), 0)::bigint AS s) x
$$;
COMMENT ON FUNCTION waiting_duration_text(double precision) IS
  'A duration in words for people: 42 s, 3 m 5 s, 1 h 58 m, 2 d 4 h.';

CREATE FUNCTION task_waiting_reason(t background_tasks) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    settings task_queue_settings;
    ids jsonb;
    last_outcome text;
    lim integer;
    running integer;
    wait double precision;
BEGIN
    IF t.status IS DISTINCT FROM 'pending' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO settings FROM task_queue_settings WHERE id = 1;

    IF NOT coalesce(settings.is_active, true) THEN
        RETURN jsonb_build_object('reason', 'queue_stopped',
            'text', 'queue stopped (task_queue_settings.is_active is false): no worker claims until it is resumed');
    END IF;

    IF t.waiting_for > 0 THEN
        SELECT jsonb_agg(b.id ORDER BY b.created_at, b.id) INTO ids
        FROM task_dependencies d JOIN background_tasks b ON b.id = d.depends_on
        WHERE d.task_id = t.id AND b.status <> 'completed';
        RETURN jsonb_build_object('reason', 'dependencies', 'count', t.waiting_for,
            'taskIds', coalesce(ids, '[]'::jsonb),
            'text', format('waiting on %s %s: %s', t.waiting_for,
                           CASE WHEN t.waiting_for = 1 THEN 'dependency' ELSE 'dependencies' END,
                           (SELECT string_agg(x, ', ') FROM jsonb_array_elements_text(coalesce(ids, '[]')) x)));
    END IF;

    IF t.run_at > now() THEN
        wait := extract(epoch FROM t.run_at - now());
        IF t.attempt > 0 THEN  -- it ran before: why it runs again later is its latest attempt's outcome
            SELECT e.outcome INTO last_outcome FROM task_attempt_errors e
            WHERE e.task_id = t.id ORDER BY e.attempt DESC, e.id DESC LIMIT 1;
        END IF;
        IF last_outcome = 'rate_limited' THEN
            RETURN jsonb_build_object('reason', 'rate_limited', 'runAt', t.run_at,
                'text', format('waiting for the model provider''s budget (rate limited): runs again in %s',
                               waiting_duration_text(wait)));
        ELSIF last_outcome IN ('retried', 'lease_expired') THEN
            RETURN jsonb_build_object('reason', 'retry_backoff', 'runAt', t.run_at, 'retry', t.retry_count,
                'maxRetries', t.max_retries,
                'text', format('backing off before retry %s of %s: runs in %s', t.retry_count, t.max_retries,
                               waiting_duration_text(wait)));
        END IF;
        RETURN jsonb_build_object('reason', 'scheduled', 'runAt', t.run_at,
            'text', format('scheduled for later: run_at %s (in %s)',
                           to_char(t.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                           waiting_duration_text(wait)));
    END IF;

    -- A worker that published no types claims any type (worker_task_types() NULL).
    IF NOT EXISTS (
        SELECT FROM bgtasks_workers w
        WHERE w.stopped_at IS NULL AND w.heartbeat_at >= now() - worker_stale_after()
          AND (EXISTS (SELECT FROM task_type_workers s WHERE s.worker_id = w.worker_id AND s.task_type = t.task_type)
               OR NOT EXISTS (SELECT FROM task_type_workers s WHERE s.worker_id = w.worker_id)))
    THEN
        RETURN jsonb_build_object('reason', 'no_worker', 'taskType', t.task_type,
            'text', format('no live worker serves task type %s (see task_types_served)', t.task_type));
    END IF;

    -- Running counts read the partial index of processing rows: as many as run, never the whole table.
    lim := user_running_limit(t.user_id);
    IF lim IS NOT NULL THEN
        SELECT count(*) INTO running FROM background_tasks r WHERE r.status = 'processing' AND r.user_id = t.user_id;
        IF running >= lim THEN
            RETURN jsonb_build_object('reason', 'user_limit', 'userId', t.user_id, 'running', running, 'limit', lim,
                'text', format('held by the user''s limit: %s/%s running (user_limits of %s)', running, lim,
                               t.user_id));
        END IF;
    END IF;

    SELECT l.max_running INTO lim FROM task_type_limits l WHERE l.task_type = t.task_type;
    IF FOUND THEN
        SELECT count(*) INTO running FROM background_tasks r WHERE r.status = 'processing' AND r.task_type = t.task_type;
        IF running >= lim THEN
            RETURN jsonb_build_object('reason', 'type_limit', 'taskType', t.task_type, 'running', running,
                'limit', lim,
                'text', format('held by the type''s limit: %s/%s running (task_type_limits of %s)', running, lim,
                               t.task_type));
        END IF;
    END IF;

    IF settings.max_concurrent_tasks IS NOT NULL THEN
        SELECT count(*) INTO running FROM background_tasks r WHERE r.status = 'processing';
        IF running >= settings.max_concurrent_tasks THEN
            RETURN jsonb_build_object('reason', 'global_limit', 'running', running,
                'limit', settings.max_concurrent_tasks,
                'text', format('held by the global limit: %s/%s running (task_queue_settings.max_concurrent_tasks)',
                               running, settings.max_concurrent_tasks));
        END IF;
    END IF;

    RETURN jsonb_build_object('reason', 'ready', 'text', 'ready: next free worker thread claims it (priority, then age)');
END
$$;
COMMENT ON FUNCTION task_waiting_reason(background_tasks) IS
  'Why a pending task is not running yet, as {"reason", "text", ...}: queue_stopped, dependencies (count, taskIds), scheduled (runAt), retry_backoff (retry, runAt), rate_limited (runAt), no_worker (taskType), user_limit / type_limit / global_limit (running, limit), ready. NULL unless pending. SELECT task_waiting_reason(t) FROM background_tasks t WHERE id = ''…''.';

CREATE VIEW pending_tasks_why AS
SELECT t.id, t.user_id, t.task_type, t.priority, t.created_at, t.run_at,
       w.why->>'reason' AS reason, w.why->>'text' AS why, w.why AS details
FROM background_tasks t
CROSS JOIN LATERAL (SELECT task_waiting_reason(t) AS why) w
WHERE t.status = 'pending';
COMMENT ON VIEW pending_tasks_why IS
  'Every pending task and why it waits (task_waiting_reason()): SELECT id, reason, why FROM pending_tasks_why WHERE user_id = ''…''; one function call per row, so filter first on a big queue.';

ALTER TABLE task_attempt_errors ADD COLUMN traceback text CHECK (length(traceback) <= 16384);
COMMENT ON COLUMN task_attempt_errors.traceback IS
  'The Python traceback of the failed attempt (at most 16,384 characters: its start and its end); NULL when there was none (lease expired, cancelled).';

CREATE FUNCTION record_attempt_traceback(task_id text, claimed_attempt integer, tb text) RETURNS boolean
LANGUAGE sql AS $$
    WITH latest AS (
        SELECT e.id FROM task_attempt_errors e
        WHERE e.task_id = record_attempt_traceback.task_id AND e.attempt = claimed_attempt
        ORDER BY e.id DESC LIMIT 1
    )
    UPDATE task_attempt_errors e SET traceback = left(tb, 16384) FROM latest WHERE e.id = latest.id
    RETURNING true
$$;
COMMENT ON FUNCTION record_attempt_traceback(text, integer, text) IS
  'Worker: keep the traceback of the attempt fail_task() (or postpone_rate_limited()) just recorded.';
