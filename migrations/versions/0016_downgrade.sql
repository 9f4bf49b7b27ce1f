-- Back to 0019: task_waiting_reason() and the two comments as 0012 and 0011 wrote them (a fixed copy, not
-- read out of their files), then 0016's objects dropped.

CREATE OR REPLACE FUNCTION task_waiting_reason(t background_tasks) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
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

COMMENT ON COLUMN task_attempt_errors.outcome IS
  'retried (back to pending after backoff), failed (task ended in error), lease_expired (worker lost; retried or failed), rate_limited (the provider said 429: back to pending without counting a retry).';

DROP VIEW provider_budget_usage;
DROP FUNCTION postpone_for_budget(text, integer, text, text, double precision, text);
DROP FUNCTION settle_provider_budget(bigint, integer, boolean, double precision, integer, double precision, bigint, double precision, double precision);
DROP FUNCTION reserve_provider_budget(text, text, text, integer, double precision);
DROP FUNCTION provider_budget_expected_end(provider_budget_reservations, double precision, timestamptz);
DROP FUNCTION provider_budget_factor(provider_budgets, timestamptz);
DROP TABLE provider_budget_waits;
DROP TABLE provider_budget_reservations;
DROP TABLE provider_budgets;  -- and its triggers
DROP FUNCTION provider_budgets_changed();
DELETE FROM task_attempt_errors WHERE outcome = 'budget_wait';
ALTER TABLE task_attempt_errors DROP CONSTRAINT task_attempt_errors_outcome_check;
ALTER TABLE task_attempt_errors ADD CONSTRAINT task_attempt_errors_outcome_check
    CHECK (outcome IN ('retried', 'failed', 'lease_expired', 'rate_limited'));
