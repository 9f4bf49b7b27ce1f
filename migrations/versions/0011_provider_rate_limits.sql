-- A provider's rate limit (HTTP 429) is not the task's failure: the task waits and runs again without
-- spending max_retries, until it has waited a configured total; then 429s count like any failure.

ALTER TABLE background_tasks ADD COLUMN provider_wait_seconds double precision NOT NULL DEFAULT 0;
COMMENT ON COLUMN background_tasks.provider_wait_seconds IS
  'Seconds this task was rescheduled to wait for the model provider''s rate limits (429), over all attempts; bounded by BGTASKS_RATE_LIMIT_MAX_WAIT_S.';

ALTER TABLE task_attempt_errors DROP CONSTRAINT task_attempt_errors_outcome_check;
ALTER TABLE task_attempt_errors ADD CONSTRAINT task_attempt_errors_outcome_check
    CHECK (outcome IN ('retried', 'failed', 'lease_expired', 'rate_limited'));
COMMENT ON COLUMN task_attempt_errors.outcome IS
  'retried (back to pending after backoff), failed (task ended in error), lease_expired (worker lost; retried or failed), rate_limited (the provider said 429: back to pending without counting a retry).';

CREATE FUNCTION postpone_rate_limited(task_id text, claimed_attempt integer, error_type text, message text,
                                      retry_after_seconds double precision, max_wait_seconds double precision)
RETURNS task_status LANGUAGE plpgsql AS $$
DECLARE
    t background_tasks;
    waits integer;
    delay double precision;
BEGIN
    SELECT * INTO t FROM background_tasks
    WHERE id = task_id AND attempt = claimed_attempt AND status = 'processing' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;  -- cancelled, taken back or deleted meanwhile: nothing of ours to write
    END IF;
    -- The server's hint when it gave one, else the queue's backoff over the waits so far (not retry_count,
    -- which a rate limit leaves alone).
    SELECT count(*) INTO waits FROM task_attempt_errors e WHERE e.task_id = t.id AND e.outcome = 'rate_limited';
    delay := coalesce(retry_after_seconds, extract(epoch FROM task_retry_delay(waits)));
    IF t.provider_wait_seconds + delay > max_wait_seconds THEN
        RETURN fail_task(task_id, claimed_attempt, error_type,
                         format('%s (rate limited for %s s in all, over the limit of %s s: counted as a failed attempt)',
                                message, round(t.provider_wait_seconds::numeric, 1), max_wait_seconds),
                         false, retry_after_seconds);
    END IF;
    INSERT INTO task_attempt_errors (task_id, attempt, worker_id, error_type, error_message, outcome, started_at)
    VALUES (t.id, t.attempt, t.worker_id, error_type, message, 'rate_limited', t.started_at);
    UPDATE background_tasks SET
        status = 'pending',
        error_message = message,
        provider_wait_seconds = provider_wait_seconds + delay,
        run_at = now() + make_interval(secs => delay),
        description = format('Waiting for the model provider (rate limited): trying again in %s s',
                             round(delay::numeric, 1))
    WHERE id = t.id;
    RETURN 'pending';
END
$$;
COMMENT ON FUNCTION postpone_rate_limited(text, integer, text, text, double precision, double precision) IS
  'Worker: the provider rate-limited this attempt (429); back to pending after Retry-After (or backoff) without counting a retry, while the task''s total wait stays within max_wait_seconds; past it, fail_task().';

-- Lists carry a preview of a large result instead of the result (the task's own page has it whole).
CREATE FUNCTION task_result_preview(result jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'truncated', true,
        'keys', CASE WHEN jsonb_typeof(result) = 'object'
                     THEN (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(result) AS k) END,
        'counts', CASE WHEN jsonb_typeof(result) = 'object'
                       THEN (SELECT jsonb_object_agg(e.key, jsonb_array_length(e.value)) FROM jsonb_each(result) e
                             WHERE jsonb_typeof(e.value) = 'array') END,
        'summary', CASE WHEN jsonb_typeof(result -> 'summary') = 'string'
                        THEN to_jsonb(left(result ->> 'summary', 500)) END,
        'success', CASE WHEN jsonb_typeof(result) = 'object' THEN result -> 'success' END))
$$;
COMMENT ON FUNCTION task_result_preview(jsonb) IS
  'What a task list shows instead of a large result: {"truncated": true, "keys": [...], "counts": {array key: length}, "summary": first 500 characters, "success"}.';
