-- bgtasks schema, version 1: the task table (the row is the message), queue settings, history, accounts,
-- usage, quiz questions, and the functions and triggers that every state change goes through.

CREATE TYPE task_status AS ENUM ('pending', 'processing', 'completed', 'error', 'cancelled');
COMMENT ON TYPE task_status IS
  'Task states (union of both seeds). Seed two''s "failed" is this "error": the seed-two endpoints show it as failed.';

CREATE SEQUENCE background_task_changes AS bigint;
COMMENT ON SEQUENCE background_task_changes IS
  'Monotonic change numbers: every visible change of a task takes the next one; SSE event ids and Last-Event-ID resume use them.';

CREATE TABLE background_tasks (
    id               text PRIMARY KEY DEFAULT ('task_' || replace(gen_random_uuid()::text, '-', ''))
                     CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    task_type        text NOT NULL CHECK (task_type ~ '^[a-z][a-z0-9_-]{0,39}$'),
    status           task_status NOT NULL DEFAULT 'pending',
    priority         integer NOT NULL DEFAULT 0,
    user_id          text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 200),
    project_id       text,
    project_name     text,
    project_path     text,
    label            text,
    description      text,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(payload) = 'object'),
    progress         integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    total            integer NOT NULL DEFAULT 100 CHECK (total >= 0),
    retry_count      integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries      integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 100),
    error_message    text,
    result_data      jsonb,
    result           jsonb GENERATED ALWAYS AS (result_data) STORED,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          integer NOT NULL DEFAULT 0,
    worker_id        text,
    lease_expires_at timestamptz,
    waiting_for      integer NOT NULL DEFAULT 0 CHECK (waiting_for >= 0),
    idempotency_key  text CHECK (length(idempotency_key) <= 200),
    schedule_name    text,
    scheduled_for    timestamptz,
    cancel_reason    text,
    prompt_tokens    bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    change_seq       bigint NOT NULL DEFAULT nextval('background_task_changes'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz
);
ALTER SEQUENCE background_task_changes OWNED BY background_tasks.change_seq;

COMMENT ON TABLE background_tasks IS
  'One row per background task. The row is the queue message: workers claim pending rows with FOR UPDATE SKIP LOCKED. Change status with the functions cancel_task(), retry_task() or a plain UPDATE: triggers keep timestamps, check transitions and notify listeners.';
COMMENT ON COLUMN background_tasks.id IS 'Task id (text, as in both seeds), e.g. task_3f2a…; also the Dramatiq message id.';
COMMENT ON COLUMN background_tasks.task_type IS 'Which actor runs it: docs, tasks, goals, context, code (seed one); generation, validation, emoji-regeneration (seed two); or a registered test/custom type.';
COMMENT ON COLUMN background_tasks.status IS 'pending -> processing -> completed | error | cancelled; error and cancelled can be retried (back to pending).';
COMMENT ON COLUMN background_tasks.priority IS 'Higher runs first; ties run oldest first.';
COMMENT ON COLUMN background_tasks.user_id IS 'Owner. Users see only their own tasks; superusers see all.';
COMMENT ON COLUMN background_tasks.project_id IS 'Seed one: the project this task works on.';
COMMENT ON COLUMN background_tasks.project_name IS 'Seed one: the project''s display name.';
COMMENT ON COLUMN background_tasks.project_path IS 'Seed one: the project''s directory, under a configured project root.';
COMMENT ON COLUMN background_tasks.label IS 'Seed two: short title shown in task lists.';
COMMENT ON COLUMN background_tasks.description IS 'Seed two: what the task is doing now, in words (changes with progress).';
COMMENT ON COLUMN background_tasks.payload IS 'The actor''s arguments (JSON object), e.g. {"amount": 10, "category": "Historia"}.';
COMMENT ON COLUMN background_tasks.progress IS 'Seed two: 0-100; 100 when completed.';
COMMENT ON COLUMN background_tasks.total IS 'Seed two: the scale of progress (always 100 here; kept for seed compatibility).';
COMMENT ON COLUMN background_tasks.retry_count IS 'Failed attempts that were retried so far (seed one). Manual retry resets it.';
COMMENT ON COLUMN background_tasks.max_retries IS 'Retries allowed after the first attempt before the task ends in error.';
COMMENT ON COLUMN background_tasks.error_message IS 'The last error, in words a user can act on. Every attempt''s error is in task_attempt_errors.';
COMMENT ON COLUMN background_tasks.result_data IS 'Seed one: the result (JSON) of a completed task.';
COMMENT ON COLUMN background_tasks.result IS 'Seed two''s name for result_data (generated: always equal to it; write result_data).';
COMMENT ON COLUMN background_tasks.run_at IS 'Not claimed before this time: delayed tasks and retry backoff.';
COMMENT ON COLUMN background_tasks.attempt IS 'How many times a worker has claimed it; every write of a worker is conditional on it (the lease token).';
COMMENT ON COLUMN background_tasks.worker_id IS 'The worker that holds (or last held) the task: host:pid:nonce, see bgtasks_workers.';
COMMENT ON COLUMN background_tasks.lease_expires_at IS 'While processing: the worker''s heartbeat keeps pushing this forward; once past, any worker takes the task back.';
COMMENT ON COLUMN background_tasks.waiting_for IS 'How many of the tasks it depends on (task_dependencies) have not completed; claimable only at 0.';
COMMENT ON COLUMN background_tasks.idempotency_key IS 'Idempotency-Key of the create request; unique per user.';
COMMENT ON COLUMN background_tasks.schedule_name IS 'The schedule (task_schedules.name) that created it, if any.';
COMMENT ON COLUMN background_tasks.scheduled_for IS 'The due time of the schedule it was created for; unique per schedule.';
COMMENT ON COLUMN background_tasks.cancel_reason IS 'Why it was cancelled (by whom, or which dependency failed).';
COMMENT ON COLUMN background_tasks.prompt_tokens IS 'Model prompt tokens used so far, over all attempts (details in task_model_calls).';
COMMENT ON COLUMN background_tasks.completion_tokens IS 'Model completion tokens used so far, over all attempts.';
COMMENT ON COLUMN background_tasks.change_seq IS 'Number of its latest visible change (from background_task_changes): SSE event id.';
COMMENT ON COLUMN background_tasks.created_at IS 'When it was created.';
COMMENT ON COLUMN background_tasks.updated_at IS 'When it last changed visibly (not lease heartbeats).';
COMMENT ON COLUMN background_tasks.started_at IS 'When its latest attempt was claimed.';
COMMENT ON COLUMN background_tasks.completed_at IS 'When it reached completed, error or cancelled.';

-- The claim reads this index in order and stops at LIMIT: pending, not waiting, by priority then age.
CREATE INDEX background_tasks_claim_idx ON background_tasks (priority DESC, run_at, id)
    WHERE status = 'pending' AND waiting_for = 0;
COMMENT ON INDEX background_tasks_claim_idx IS 'Serves the claim: claimable rows in claim order.';
CREATE INDEX background_tasks_processing_idx ON background_tasks (lease_expires_at) WHERE status = 'processing';
COMMENT ON INDEX background_tasks_processing_idx IS 'Running tasks: the global-limit count and the lease reaper.';
CREATE INDEX background_tasks_user_idx ON background_tasks (user_id, created_at DESC);
COMMENT ON INDEX background_tasks_user_idx IS 'Per-user listing, newest first.';
CREATE INDEX background_tasks_project_idx ON background_tasks (project_id, created_at DESC) WHERE project_id IS NOT NULL;
COMMENT ON INDEX background_tasks_project_idx IS 'Per-project listing (seed one), newest first.';
CREATE INDEX background_tasks_created_idx ON background_tasks (created_at DESC);
COMMENT ON INDEX background_tasks_created_idx IS 'Everyone''s tasks newest first (superuser overview).';
CREATE INDEX background_tasks_change_idx ON background_tasks (change_seq);
COMMENT ON INDEX background_tasks_change_idx IS 'Last-Event-ID resume: what changed since a change number.';
CREATE INDEX background_tasks_finished_idx ON background_tasks (completed_at)
    WHERE status IN ('completed', 'error', 'cancelled');
COMMENT ON INDEX background_tasks_finished_idx IS 'Retention: finished tasks oldest first.';
CREATE UNIQUE INDEX background_tasks_idempotency_key ON background_tasks (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
COMMENT ON INDEX background_tasks_idempotency_key IS 'A repeated Idempotency-Key returns the first task, never a second.';
CREATE UNIQUE INDEX background_tasks_schedule_due ON background_tasks (schedule_name, scheduled_for)
    WHERE schedule_name IS NOT NULL;
COMMENT ON INDEX background_tasks_schedule_due IS 'Exactly one task per schedule and due time, whatever the number of workers.';

CREATE TABLE task_queue_settings (
    id                   integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    is_active            boolean NOT NULL DEFAULT true,
    poll_interval        integer NOT NULL DEFAULT 5000 CHECK (poll_interval BETWEEN 10 AND 3600000),
    max_concurrent_tasks integer CHECK (max_concurrent_tasks >= 0),
    retry_base_delay_ms  integer NOT NULL DEFAULT 2000 CHECK (retry_base_delay_ms >= 0),
    retry_max_delay_ms   integer NOT NULL DEFAULT 600000 CHECK (retry_max_delay_ms >= 0),
    last_poll_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE task_queue_settings IS
  'The queue''s settings, one row (id = 1), as in seed one. Workers read it at every claim: an UPDATE takes effect at once, no restart.';
COMMENT ON COLUMN task_queue_settings.id IS 'Always 1.';
COMMENT ON COLUMN task_queue_settings.is_active IS 'false: no worker claims new tasks (running ones finish). Seed one''s start/stop.';
COMMENT ON COLUMN task_queue_settings.poll_interval IS 'Milliseconds between a worker''s fallback polls; workers also wake on NOTIFY at once.';
COMMENT ON COLUMN task_queue_settings.max_concurrent_tasks IS 'Most tasks processing at once over all workers and hosts; NULL: no global limit.';
COMMENT ON COLUMN task_queue_settings.retry_base_delay_ms IS 'Retry backoff: the first retry waits about this long, doubling each time (with jitter).';
COMMENT ON COLUMN task_queue_settings.retry_max_delay_ms IS 'Retry backoff never waits longer than this.';
COMMENT ON COLUMN task_queue_settings.last_poll_at IS 'When a worker last polled the queue (seed one).';
COMMENT ON COLUMN task_queue_settings.created_at IS 'When the row was created.';
COMMENT ON COLUMN task_queue_settings.updated_at IS 'When a setting last changed.';
INSERT INTO task_queue_settings (id) VALUES (1);

CREATE TABLE task_attempt_errors (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id       text NOT NULL REFERENCES background_tasks (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    worker_id     text,
    error_type    text NOT NULL,
    error_message text NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('retried', 'failed', 'lease_expired')),
    started_at    timestamptz,
    failed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_attempt_errors_task_idx ON task_attempt_errors (task_id, attempt);
COMMENT ON TABLE task_attempt_errors IS 'One row per attempt that did not complete: its error, when, on which worker, and what followed.';
COMMENT ON COLUMN task_attempt_errors.id IS 'Row number.';
COMMENT ON COLUMN task_attempt_errors.task_id IS 'The task.';
COMMENT ON COLUMN task_attempt_errors.attempt IS 'background_tasks.attempt of the failed attempt.';
COMMENT ON COLUMN task_attempt_errors.worker_id IS 'The worker that ran it.';
COMMENT ON COLUMN task_attempt_errors.error_type IS 'Exception class, or LeaseExpired when the worker died.';
COMMENT ON COLUMN task_attempt_errors.error_message IS 'The error in words.';
COMMENT ON COLUMN task_attempt_errors.outcome IS 'retried (back to pending after backoff), failed (task ended in error), lease_expired (worker lost; retried or failed).';
COMMENT ON COLUMN task_attempt_errors.started_at IS 'When the attempt began.';
COMMENT ON COLUMN task_attempt_errors.failed_at IS 'When it failed.';

CREATE TABLE bgtasks_workers (
    worker_id    text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    concurrency  integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
COMMENT ON TABLE bgtasks_workers IS 'Worker processes, live and recently stopped; heartbeat_at moves while a worker lives.';
COMMENT ON COLUMN bgtasks_workers.worker_id IS 'host:pid:nonce, as in background_tasks.worker_id.';
COMMENT ON COLUMN bgtasks_workers.hostname IS 'Host it runs on.';
COMMENT ON COLUMN bgtasks_workers.pid IS 'Process id on that host.';
COMMENT ON COLUMN bgtasks_workers.concurrency IS 'Tasks it runs at once at most.';
COMMENT ON COLUMN bgtasks_workers.started_at IS 'When it started.';
COMMENT ON COLUMN bgtasks_workers.heartbeat_at IS 'Its latest heartbeat.';
COMMENT ON COLUMN bgtasks_workers.stopped_at IS 'When it stopped cleanly; NULL while running (or if it died).';

CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 200),
    key_prefix   text NOT NULL,
    key_hash     text NOT NULL UNIQUE,
    is_superuser boolean NOT NULL DEFAULT false,
    label        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
COMMENT ON TABLE api_keys IS 'API keys (Authorization: Bearer KEY). Only a SHA-256 hash is stored; the key is shown once at creation.';
COMMENT ON COLUMN api_keys.id IS 'Key number.';
COMMENT ON COLUMN api_keys.user_id IS 'The user the key acts as.';
COMMENT ON COLUMN api_keys.key_prefix IS 'First characters of the key, to recognise it in lists.';
COMMENT ON COLUMN api_keys.key_hash IS 'hex SHA-256 of the key.';
COMMENT ON COLUMN api_keys.is_superuser IS 'Sees and manages every user''s tasks and the queue settings.';
COMMENT ON COLUMN api_keys.label IS 'Free text: what the key is for.';
COMMENT ON COLUMN api_keys.created_at IS 'When it was created.';
COMMENT ON COLUMN api_keys.last_used_at IS 'When it was last used (updated at most once a minute).';
COMMENT ON COLUMN api_keys.revoked_at IS 'When it was revoked; a revoked key is refused.';

CREATE TABLE task_model_calls (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id           text NOT NULL,
    user_id           text NOT NULL,
    task_type         text NOT NULL,
    attempt           integer NOT NULL,
    model             text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    total_tokens      integer NOT NULL DEFAULT 0,
    duration_ms       integer NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_model_calls_task_idx ON task_model_calls (task_id);
CREATE INDEX task_model_calls_created_idx ON task_model_calls (created_at);
COMMENT ON TABLE task_model_calls IS 'Every model call: tokens and duration. Kept when retention deletes the task, for usage reports.';
COMMENT ON COLUMN task_model_calls.id IS 'Row number.';
COMMENT ON COLUMN task_model_calls.task_id IS 'The task that made the call (no foreign key: usage outlives the task).';
COMMENT ON COLUMN task_model_calls.user_id IS 'The task''s owner.';
COMMENT ON COLUMN task_model_calls.task_type IS 'The task''s type.';
COMMENT ON COLUMN task_model_calls.attempt IS 'The task''s attempt that made the call.';
COMMENT ON COLUMN task_model_calls.model IS 'Model name as sent to the API.';
COMMENT ON COLUMN task_model_calls.prompt_tokens IS 'Prompt tokens the API reported.';
COMMENT ON COLUMN task_model_calls.completion_tokens IS 'Completion tokens the API reported.';
COMMENT ON COLUMN task_model_calls.total_tokens IS 'Total tokens the API reported.';
COMMENT ON COLUMN task_model_calls.duration_ms IS 'Wall time of the call.';
COMMENT ON COLUMN task_model_calls.created_at IS 'When the call ended.';

CREATE TABLE questions (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            text NOT NULL,
    task_id            text REFERENCES background_tasks (id) ON DELETE SET NULL,
    category           text NOT NULL,
    age_group          text NOT NULL,
    difficulty         text NOT NULL,
    question           text NOT NULL,
    options            jsonb NOT NULL CHECK (jsonb_typeof(options) = 'array'),
    correct_answer     text NOT NULL,
    emoji              text,
    explanation        text,
    validation_verdict text CHECK (validation_verdict IN ('valid', 'invalid', 'uncertain')),
    validation_reason  text,
    validated_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX questions_user_idx ON questions (user_id, created_at DESC);
COMMENT ON TABLE questions IS 'Quiz questions (seed two), written by generation tasks, checked by validation, re-emojied by emoji-regeneration.';
COMMENT ON COLUMN questions.id IS 'Question number.';
COMMENT ON COLUMN questions.user_id IS 'Owner (the user whose task created it).';
COMMENT ON COLUMN questions.task_id IS 'The generation task that created it.';
COMMENT ON COLUMN questions.category IS 'Category, e.g. Historia.';
COMMENT ON COLUMN questions.age_group IS 'children, youth or adults.';
COMMENT ON COLUMN questions.difficulty IS 'easy, medium or hard.';
COMMENT ON COLUMN questions.question IS 'The question text.';
COMMENT ON COLUMN questions.options IS 'Answer options (JSON array of strings).';
COMMENT ON COLUMN questions.correct_answer IS 'The correct option, as written in options.';
COMMENT ON COLUMN questions.emoji IS 'One emoji that illustrates the question.';
COMMENT ON COLUMN questions.explanation IS 'Why the answer is right.';
COMMENT ON COLUMN questions.validation_verdict IS 'Latest validation: valid, invalid or uncertain.';
COMMENT ON COLUMN questions.validation_reason IS 'The validator''s reason.';
COMMENT ON COLUMN questions.validated_at IS 'When it was last validated.';
COMMENT ON COLUMN questions.created_at IS 'When it was created.';
COMMENT ON COLUMN questions.updated_at IS 'When it last changed.';

-- Counts by status without scanning the task table: triggers add and subtract per statement. Each backend
-- writes its own shard, so concurrent workers do not queue on one hot row.
CREATE TABLE task_counts (
    user_id   text NOT NULL,
    task_type text NOT NULL,
    status    task_status NOT NULL,
    shard     smallint NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (user_id, task_type, status, shard)
);
COMMENT ON TABLE task_counts IS 'Task counts kept by triggers (sum n over shards): SELECT status, sum(n) FROM task_counts GROUP BY 1. Never scan background_tasks to count.';
COMMENT ON COLUMN task_counts.user_id IS 'Owner.';
COMMENT ON COLUMN task_counts.task_type IS 'Task type.';
COMMENT ON COLUMN task_counts.status IS 'Status.';
COMMENT ON COLUMN task_counts.shard IS 'Spreads concurrent writers over rows; sum over it.';
COMMENT ON COLUMN task_counts.n IS 'Tasks in this group and shard (may be negative in one shard; the sum is exact).';

-- ---------------------------------------------------------------------------------------------------------
-- The state machine, in SQL: which moves are legal. service/states.py mirrors it (a test compares them).
CREATE FUNCTION task_transition_allowed(from_status task_status, to_status task_status) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT from_status = to_status OR (from_status, to_status) IN (
        ('pending', 'processing'), ('pending', 'completed'), ('pending', 'error'), ('pending', 'cancelled'),
        ('processing', 'pending'), ('processing', 'completed'), ('processing', 'error'),
        ('processing', 'cancelled'),
        ('error', 'pending'), ('cancelled', 'pending'))
$$;
COMMENT ON FUNCTION task_transition_allowed(task_status, task_status) IS
  'The legal status moves. completed is final; error and cancelled go back to pending only by a retry.';

-- Before a visible change: check the move, keep timestamps and the lease coherent, take a change number.
CREATE FUNCTION background_tasks_before_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT task_transition_allowed(OLD.status, NEW.status) THEN
            RAISE EXCEPTION 'task % is %; it cannot become %', OLD.id, OLD.status, NEW.status
                USING ERRCODE = 'BG409', HINT = 'completed is final; retry an error or cancelled task instead';
        END IF;
        IF NEW.status IN ('completed', 'error', 'cancelled') THEN
            NEW.completed_at := coalesce(NEW.completed_at, now());
            NEW.lease_expires_at := NULL;
            IF NEW.status = 'completed' THEN NEW.progress := 100; END IF;
        ELSIF NEW.status = 'pending' THEN
            NEW.lease_expires_at := NULL;
            NEW.completed_at := NULL;
        END IF;
    END IF;
    NEW.change_seq := nextval('background_task_changes');
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER background_tasks_before_change
    BEFORE UPDATE ON background_tasks FOR EACH ROW
    WHEN ((OLD.status, OLD.progress, OLD.description, OLD.label, OLD.priority, OLD.run_at, OLD.error_message,
           OLD.max_retries, OLD.waiting_for, OLD.result_data)
          IS DISTINCT FROM
          (NEW.status, NEW.progress, NEW.description, NEW.label, NEW.priority, NEW.run_at, NEW.error_message,
           NEW.max_retries, NEW.waiting_for, NEW.result_data))
    EXECUTE FUNCTION background_tasks_before_change();
COMMENT ON TRIGGER background_tasks_before_change ON background_tasks IS
  'Refuses illegal status moves (SQLSTATE BG409), stamps updated_at, completed_at and change_seq. Lease heartbeats do not fire it.';

-- NOTIFY payloads: a JSON array of {"id","status","seq"} entries, split so each stays far under the
-- 8000-byte limit; never the result or description (listeners read the row).
CREATE FUNCTION notify_in_chunks(channel text, entries text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    entry text;
    chunk text := '';
BEGIN
    FOREACH entry IN ARRAY entries LOOP
        IF length(chunk) + length(entry) > 7000 THEN
            PERFORM pg_notify(channel, '[' || chunk || ']');
            chunk := '';
        END IF;
        chunk := CASE WHEN chunk = '' THEN entry ELSE chunk || ',' || entry END;
    END LOOP;
    IF chunk <> '' THEN
        PERFORM pg_notify(channel, '[' || chunk || ']');
    END IF;
END
$$;
COMMENT ON FUNCTION notify_in_chunks(text, text[]) IS 'pg_notify the entries as JSON arrays of at most ~7000 bytes each.';

-- After each statement (not each row): one NOTIFY for the whole batch, and the counts in task_counts.
CREATE FUNCTION background_tasks_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notify_in_chunks('bgtasks_tasks', ARRAY(
        SELECT jsonb_build_object('id', id, 'status', status, 'seq', change_seq)::text FROM new_rows));
    INSERT INTO task_counts AS c (user_id, task_type, status, shard, n)
    SELECT user_id, task_type, status, pg_backend_pid() % 16, count(*) FROM new_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, task_type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$$;
CREATE FUNCTION background_tasks_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notify_in_chunks('bgtasks_tasks', ARRAY(
        SELECT jsonb_build_object('id', n.id, 'status', n.status, 'seq', n.change_seq)::text
        FROM new_rows n JOIN old_rows o USING (id) WHERE n.change_seq <> o.change_seq));
    INSERT INTO task_counts AS c (user_id, task_type, status, shard, n)
    SELECT user_id, task_type, status, pg_backend_pid() % 16, sum(d) FROM (
        SELECT n.user_id, n.task_type, n.status, 1 AS d
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE (n.status, n.user_id, n.task_type) IS DISTINCT FROM (o.status, o.user_id, o.task_type)
        UNION ALL
        SELECT o.user_id, o.task_type, o.status, -1
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE (n.status, n.user_id, n.task_type) IS DISTINCT FROM (o.status, o.user_id, o.task_type)
    ) delta
    GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, task_type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$$;
CREATE FUNCTION background_tasks_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notify_in_chunks('bgtasks_tasks', ARRAY(
        SELECT jsonb_build_object('id', id, 'status', 'deleted', 'seq', change_seq)::text FROM old_rows));
    INSERT INTO task_counts AS c (user_id, task_type, status, shard, n)
    SELECT user_id, task_type, status, pg_backend_pid() % 16, -count(*) FROM old_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, task_type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$$;
CREATE FUNCTION background_tasks_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_counts;
    PERFORM pg_notify('bgtasks_tasks', '[{"id":"*","status":"deleted","seq":0}]');
    RETURN NULL;
END
$$;
CREATE TRIGGER background_tasks_after_insert AFTER INSERT ON background_tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION background_tasks_after_insert();
CREATE TRIGGER background_tasks_after_update AFTER UPDATE ON background_tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION background_tasks_after_update();
CREATE TRIGGER background_tasks_after_delete AFTER DELETE ON background_tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION background_tasks_after_delete();
CREATE TRIGGER background_tasks_after_truncate AFTER TRUNCATE ON background_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION background_tasks_after_truncate();
COMMENT ON TRIGGER background_tasks_after_insert ON background_tasks IS 'NOTIFY bgtasks_tasks (one per statement) and count.';
COMMENT ON TRIGGER background_tasks_after_update ON background_tasks IS 'NOTIFY bgtasks_tasks for visible changes (not heartbeats) and count.';
COMMENT ON TRIGGER background_tasks_after_delete ON background_tasks IS 'NOTIFY bgtasks_tasks with status deleted and count.';
COMMENT ON TRIGGER background_tasks_after_truncate ON background_tasks IS 'Reset task_counts.';

-- Settings changes reach every worker and hub at once.
CREATE FUNCTION task_queue_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    PERFORM pg_notify('bgtasks_queue', jsonb_build_object(
        'is_active', NEW.is_active, 'poll_interval', NEW.poll_interval,
        'max_concurrent_tasks', NEW.max_concurrent_tasks)::text);
    RETURN NEW;
END
$$;
CREATE TRIGGER task_queue_settings_changed BEFORE UPDATE ON task_queue_settings FOR EACH ROW
    WHEN ((OLD.is_active, OLD.poll_interval, OLD.max_concurrent_tasks, OLD.retry_base_delay_ms,
           OLD.retry_max_delay_ms)
          IS DISTINCT FROM (NEW.is_active, NEW.poll_interval, NEW.max_concurrent_tasks, NEW.retry_base_delay_ms,
           NEW.retry_max_delay_ms))
    EXECUTE FUNCTION task_queue_settings_changed();
COMMENT ON TRIGGER task_queue_settings_changed ON task_queue_settings IS
  'NOTIFY bgtasks_queue so workers and dashboards see start/stop and limits at once.';

-- ---------------------------------------------------------------------------------------------------------
-- The queue's operations. Workers, the API and operators at psql call the same functions.

CREATE FUNCTION task_retry_delay(retries_so_far integer) RETURNS interval LANGUAGE sql VOLATILE AS $$
    SELECT make_interval(secs => least(s.retry_max_delay_ms,
                                       s.retry_base_delay_ms * power(2, least(retries_so_far, 30)))
                                 * (0.5 + random() * 0.5) / 1000.0)
    FROM task_queue_settings s WHERE s.id = 1
$$;
COMMENT ON FUNCTION task_retry_delay(integer) IS
  'Exponential backoff with jitter: base * 2^retries, capped, times a random 0.5-1.0 (settings in task_queue_settings).';

-- Claim up to max_tasks claimable tasks for a worker: one short transaction, no lock held afterwards.
-- With a global limit, claimers take turns on an advisory lock and count running rows under it; each
-- statement in plpgsql sees a fresh snapshot, so the count includes claims committed by the previous holder.
CREATE FUNCTION claim_tasks(worker text, max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
DECLARE
    settings task_queue_settings;
    free integer := max_tasks;
BEGIN
    SELECT * INTO settings FROM task_queue_settings WHERE id = 1;
    IF NOT FOUND OR NOT settings.is_active OR max_tasks <= 0 THEN
        RETURN;
    END IF;
    IF settings.max_concurrent_tasks IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('bgtasks.claim'));
        SELECT * INTO settings FROM task_queue_settings WHERE id = 1;  -- as of now that we hold the lock
        IF NOT settings.is_active THEN
            RETURN;
        END IF;
        IF settings.max_concurrent_tasks IS NOT NULL THEN
            free := least(free, settings.max_concurrent_tasks
                                - (SELECT count(*) FROM background_tasks WHERE status = 'processing'));
        END IF;
        IF free <= 0 THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    UPDATE background_tasks t
    SET status = 'processing', worker_id = worker, attempt = t.attempt + 1, started_at = now(),
        lease_expires_at = now() + make_interval(secs => lease_seconds)
    FROM (
        SELECT c.id FROM background_tasks c
        WHERE c.status = 'pending' AND c.waiting_for = 0 AND c.run_at <= now()
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT free
        FOR UPDATE SKIP LOCKED
    ) picked
    WHERE t.id = picked.id
    RETURNING t.*;
END
$$;
COMMENT ON FUNCTION claim_tasks(text, integer, double precision) IS
  'Worker claim: up to max_tasks pending tasks (priority, then age; run_at due; not waiting), under is_active and max_concurrent_tasks. Sets processing, worker_id, attempt + 1 and the lease.';

CREATE FUNCTION complete_task(task_id text, claimed_attempt integer, result_json jsonb) RETURNS boolean
LANGUAGE sql AS $$
    WITH done AS (
        UPDATE background_tasks SET status = 'completed', result_data = result_json, error_message = NULL
        WHERE id = task_id AND attempt = claimed_attempt AND status = 'processing'
        RETURNING 1)
    SELECT EXISTS (SELECT FROM done)
$$;
COMMENT ON FUNCTION complete_task(text, integer, jsonb) IS
  'Worker: mark a task completed with its result, only if that attempt still holds it (never a cancelled task).';

CREATE FUNCTION complete_tasks(task_ids text[], claimed_attempts integer[], results jsonb[])
RETURNS SETOF text LANGUAGE sql AS $$
    UPDATE background_tasks t SET status = 'completed', result_data = r.result, error_message = NULL
    FROM unnest(task_ids, claimed_attempts, results) AS r(id, attempt, result)
    WHERE t.id = r.id AND t.attempt = r.attempt AND t.status = 'processing'
    RETURNING t.id
$$;
COMMENT ON FUNCTION complete_tasks(text[], integer[], jsonb[]) IS
  'Worker: complete_task for a batch in one statement (one NOTIFY); returns the ids it completed.';

CREATE FUNCTION fail_task(task_id text, claimed_attempt integer, error_type text, message text,
                          permanent boolean DEFAULT false, retry_after_seconds double precision DEFAULT NULL)
RETURNS task_status LANGUAGE plpgsql AS $$
DECLARE
    t background_tasks;
    retrying boolean;
BEGIN
    SELECT * INTO t FROM background_tasks
    WHERE id = task_id AND attempt = claimed_attempt AND status = 'processing' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;  -- cancelled, taken back or deleted meanwhile: nothing of ours to write
    END IF;
    retrying := NOT permanent AND t.retry_count < t.max_retries;
    INSERT INTO task_attempt_errors (task_id, attempt, worker_id, error_type, error_message, outcome, started_at)
    VALUES (t.id, t.attempt, t.worker_id, error_type, message,
            CASE WHEN retrying THEN 'retried' ELSE 'failed' END, t.started_at);
    UPDATE background_tasks SET
        status = CASE WHEN retrying THEN 'pending' ELSE 'error' END::task_status,
        error_message = message,
        retry_count = retry_count + retrying::integer,
        run_at = CASE WHEN retrying THEN now() + greatest(task_retry_delay(t.retry_count),
                                                          make_interval(secs => coalesce(retry_after_seconds, 0)))
                      ELSE run_at END
    WHERE id = t.id;
    RETURN CASE WHEN retrying THEN 'pending' ELSE 'error' END::task_status;
END
$$;
COMMENT ON FUNCTION fail_task(text, integer, text, text, boolean, double precision) IS
  'Worker: record a failed attempt; back to pending after backoff (or Retry-After) while retries remain, else error.';

CREATE FUNCTION release_task(task_id text, claimed_attempt integer) RETURNS boolean LANGUAGE sql AS $$
    WITH released AS (
        UPDATE background_tasks SET status = 'pending', run_at = now(), worker_id = NULL
        WHERE id = task_id AND attempt = claimed_attempt AND status = 'processing'
        RETURNING 1)
    SELECT EXISTS (SELECT FROM released)
$$;
COMMENT ON FUNCTION release_task(text, integer) IS
  'Worker shutdown: hand an unfinished task back to pending at once, without counting a retry.';

CREATE FUNCTION extend_leases(worker text, task_ids text[], lease_seconds double precision) RETURNS SETOF text
LANGUAGE sql AS $$
    UPDATE background_tasks SET lease_expires_at = now() + make_interval(secs => lease_seconds)
    WHERE id = ANY (task_ids) AND worker_id = worker AND status = 'processing'
    RETURNING id
$$;
COMMENT ON FUNCTION extend_leases(text, text[], double precision) IS
  'Worker heartbeat: push the leases of its running tasks forward; returns the ids it still holds.';

CREATE FUNCTION reap_expired_leases(max_tasks integer DEFAULT 100) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t record;
    n integer := 0;
BEGIN
    FOR t IN
        SELECT id, attempt, worker_id, lease_expires_at FROM background_tasks
        WHERE status = 'processing' AND lease_expires_at < now()
        ORDER BY lease_expires_at LIMIT max_tasks
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM fail_task(t.id, t.attempt, 'LeaseExpired',
                          format('worker %s stopped heartbeating (lease expired at %s); the attempt was lost',
                                 t.worker_id, t.lease_expires_at));
        UPDATE task_attempt_errors SET outcome = 'lease_expired'
        WHERE task_id = t.id AND attempt = t.attempt AND error_type = 'LeaseExpired';
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION reap_expired_leases(integer) IS
  'Take back tasks whose worker died: retried (counted) or failed past max_retries. Any worker runs it; safe to call at psql.';

CREATE FUNCTION cancel_task(task_id text, reason text DEFAULT 'cancelled by user') RETURNS background_tasks
LANGUAGE plpgsql AS $$
DECLARE
    t background_tasks;
BEGIN
    UPDATE background_tasks SET status = 'cancelled', cancel_reason = reason,
                                error_message = coalesce(error_message, reason)
    WHERE id = task_id AND status IN ('pending', 'processing')
    RETURNING * INTO t;
    IF FOUND THEN
        RETURN t;
    END IF;
    SELECT * INTO t FROM background_tasks WHERE id = task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % not found', task_id USING ERRCODE = 'BG404';
    END IF;
    RAISE EXCEPTION 'task % is %; only pending or processing tasks can be cancelled', task_id, t.status
        USING ERRCODE = 'BG409';
END
$$;
COMMENT ON FUNCTION cancel_task(text, text) IS
  'Cancel a pending or processing task (a running actor is told through NOTIFY and stops). Refuses finished tasks.';

CREATE FUNCTION retry_task(task_id text) RETURNS background_tasks LANGUAGE plpgsql AS $$
DECLARE
    t background_tasks;
BEGIN
    UPDATE background_tasks SET status = 'pending', retry_count = 0, run_at = now(), progress = 0,
                                error_message = NULL, cancel_reason = NULL, result_data = NULL,
                                worker_id = NULL
    WHERE id = task_id AND status IN ('error', 'cancelled')
    RETURNING * INTO t;
    IF FOUND THEN
        RETURN t;
    END IF;
    SELECT * INTO t FROM background_tasks WHERE id = task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % not found', task_id USING ERRCODE = 'BG404';
    END IF;
    RAISE EXCEPTION 'task % is %; only error or cancelled tasks can be retried', task_id, t.status
        USING ERRCODE = 'BG409';
END
$$;
COMMENT ON FUNCTION retry_task(text) IS 'Send an error or cancelled task round again (retry_count reset).';
