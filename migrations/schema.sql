-- The schema that `bgtasks migrate` (alembic upgrade head) makes on an empty database, as pg_dump
-- --schema-only prints it (normalized: tests/schema_snapshot.py). Read it to find the current definition
-- of a function, view or table; tests/integration/test_schema.py fails when a migration and this file
-- disagree. Written by `python -m tests.schema_snapshot URL`, never by hand.

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

COMMENT ON EXTENSION pg_trgm IS 'text similarity measurement and index searching based on trigrams';

CREATE TYPE public.task_status AS ENUM (
    'pending',
    'processing',
    'completed',
    'error',
    'cancelled'
);

COMMENT ON TYPE public.task_status IS 'Task states (union of both seeds). Seed two''s "failed" is this "error": the seed-two endpoints show it as failed.';

CREATE TABLE public.background_tasks (
    id text DEFAULT ('task_'::text || replace((gen_random_uuid())::text, '-'::text, ''::text)) NOT NULL,
    task_type text NOT NULL,
    status public.task_status DEFAULT 'pending'::public.task_status NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    user_id text NOT NULL,
    project_id text,
    project_name text,
    project_path text,
    label text,
    description text,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    progress integer DEFAULT 0 NOT NULL,
    total integer DEFAULT 100 NOT NULL,
    retry_count integer DEFAULT 0 NOT NULL,
    max_retries integer DEFAULT 3 NOT NULL,
    error_message text,
    result_data jsonb,
    result jsonb GENERATED ALWAYS AS (result_data) STORED,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    worker_id text,
    lease_expires_at timestamp with time zone,
    waiting_for integer DEFAULT 0 NOT NULL,
    idempotency_key text,
    schedule_name text,
    scheduled_for timestamp with time zone,
    cancel_reason text,
    prompt_tokens bigint DEFAULT 0 NOT NULL,
    completion_tokens bigint DEFAULT 0 NOT NULL,
    change_seq bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    provider_wait_seconds double precision DEFAULT 0 NOT NULL,
    CONSTRAINT background_tasks_id_check CHECK ((id ~ '^[A-Za-z0-9_.:-]{1,64}$'::text)),
    CONSTRAINT background_tasks_idempotency_key_check CHECK ((length(idempotency_key) <= 200)),
    CONSTRAINT background_tasks_max_retries_check CHECK (((max_retries >= 0) AND (max_retries <= 100))),
    CONSTRAINT background_tasks_payload_check CHECK ((jsonb_typeof(payload) = 'object'::text)),
    CONSTRAINT background_tasks_processing_has_lease CHECK (((status <> 'processing'::public.task_status) OR (lease_expires_at IS NOT NULL))),
    CONSTRAINT background_tasks_progress_check CHECK (((progress >= 0) AND (progress <= 100))),
    CONSTRAINT background_tasks_retry_count_check CHECK ((retry_count >= 0)),
    CONSTRAINT background_tasks_task_type_check CHECK ((task_type ~ '^[a-z][a-z0-9_-]{0,39}$'::text)),
    CONSTRAINT background_tasks_total_check CHECK ((total >= 0)),
    CONSTRAINT background_tasks_user_id_check CHECK (((length(user_id) >= 1) AND (length(user_id) <= 200))),
    CONSTRAINT background_tasks_waiting_for_check CHECK ((waiting_for >= 0))
);

COMMENT ON TABLE public.background_tasks IS 'One row per background task. The row is the queue message: workers claim pending rows with FOR UPDATE SKIP LOCKED. Change status with the functions cancel_task(), retry_task() or a plain UPDATE: triggers keep timestamps, check transitions and notify listeners.';

COMMENT ON COLUMN public.background_tasks.id IS 'Task id (text, as in both seeds), e.g. task_3f2a…; also the Dramatiq message id.';

COMMENT ON COLUMN public.background_tasks.task_type IS 'Which actor runs it: docs, tasks, goals, context, code (seed one); generation, validation, emoji-regeneration (seed two); or a registered test/custom type.';

COMMENT ON COLUMN public.background_tasks.status IS 'pending -> processing -> completed | error | cancelled; error and cancelled can be retried (back to pending).';

COMMENT ON COLUMN public.background_tasks.priority IS 'Higher runs first; ties run oldest first.';

COMMENT ON COLUMN public.background_tasks.user_id IS 'Owner. Users see only their own tasks; superusers see all.';

COMMENT ON COLUMN public.background_tasks.project_id IS 'Seed one: the project this task works on.';

COMMENT ON COLUMN public.background_tasks.project_name IS 'Seed one: the project''s display name.';

COMMENT ON COLUMN public.background_tasks.project_path IS 'Seed one: the project''s directory, under a configured project root.';

COMMENT ON COLUMN public.background_tasks.label IS 'Seed two: short title shown in task lists.';

COMMENT ON COLUMN public.background_tasks.description IS 'Seed two: what the task is doing now, in words (changes with progress).';

COMMENT ON COLUMN public.background_tasks.payload IS 'The actor''s arguments (JSON object), e.g. {"amount": 10, "category": "Historia"}.';

COMMENT ON COLUMN public.background_tasks.progress IS 'Seed two: 0-100; 100 when completed.';

COMMENT ON COLUMN public.background_tasks.total IS 'Seed two: the scale of progress (always 100 here; kept for seed compatibility).';

COMMENT ON COLUMN public.background_tasks.retry_count IS 'Failed attempts that were retried so far (seed one). Manual retry resets it.';

COMMENT ON COLUMN public.background_tasks.max_retries IS 'Retries allowed after the first attempt before the task ends in error.';

COMMENT ON COLUMN public.background_tasks.error_message IS 'The last error, in words a user can act on. Every attempt''s error is in task_attempt_errors.';

COMMENT ON COLUMN public.background_tasks.result_data IS 'Seed one: the result (JSON) of a completed task.';

COMMENT ON COLUMN public.background_tasks.result IS 'Seed two''s name for result_data (generated: always equal to it; write result_data).';

COMMENT ON COLUMN public.background_tasks.run_at IS 'Not claimed before this time: delayed tasks and retry backoff.';

COMMENT ON COLUMN public.background_tasks.attempt IS 'How many times a worker has claimed it; every write of a worker is conditional on it (the lease token).';

COMMENT ON COLUMN public.background_tasks.worker_id IS 'Who holds (or last held) the task: a worker (host:pid:nonce, see bgtasks_workers), an external processor (external:<user>, through the API) or sql:<role> (a plain UPDATE).';

COMMENT ON COLUMN public.background_tasks.lease_expires_at IS 'While processing (never NULL then): the holder''s heartbeat or progress updates keep pushing this forward; once past, any worker takes the task back.';

COMMENT ON COLUMN public.background_tasks.waiting_for IS 'How many of the tasks it depends on (task_dependencies) have not completed; claimable only at 0.';

COMMENT ON COLUMN public.background_tasks.idempotency_key IS 'Idempotency-Key of the create request; unique per user.';

COMMENT ON COLUMN public.background_tasks.schedule_name IS 'The schedule that created it, if any: task_schedules.name of this task''s owner (user_id).';

COMMENT ON COLUMN public.background_tasks.scheduled_for IS 'The due time of the schedule it was created for; unique per schedule.';

COMMENT ON COLUMN public.background_tasks.cancel_reason IS 'Why it was cancelled (by whom, or which dependency failed).';

COMMENT ON COLUMN public.background_tasks.prompt_tokens IS 'Model prompt tokens used so far, over all attempts (details in task_model_calls).';

COMMENT ON COLUMN public.background_tasks.completion_tokens IS 'Model completion tokens used so far, over all attempts.';

COMMENT ON COLUMN public.background_tasks.change_seq IS 'Number of its latest visible change (from background_task_changes): SSE event id.';

COMMENT ON COLUMN public.background_tasks.created_at IS 'When it was created.';

COMMENT ON COLUMN public.background_tasks.updated_at IS 'When it last changed visibly (not lease heartbeats).';

COMMENT ON COLUMN public.background_tasks.started_at IS 'When its latest attempt was claimed.';

COMMENT ON COLUMN public.background_tasks.completed_at IS 'When it reached completed, error or cancelled.';

COMMENT ON COLUMN public.background_tasks.provider_wait_seconds IS 'Seconds this task was rescheduled to wait for the model provider''s rate limits (429), over all attempts; bounded by BGTASKS_RATE_LIMIT_MAX_WAIT_S.';

COMMENT ON CONSTRAINT background_tasks_processing_has_lease ON public.background_tasks IS 'A processing task always has a lease: whoever holds it extends it, or the reaper takes the task back (reap_expired_leases()).';

CREATE FUNCTION public.add_task_dependencies(dependent text, upstream text[]) RETURNS public.background_tasks
    LANGUAGE plpgsql
    AS $$
DECLARE
    t background_tasks;
    missing text[];
    cycle_via text;
    added text[];
    unfinished integer;
    dead record;
BEGIN
    upstream := ARRAY(SELECT DISTINCT u FROM unnest(upstream) u WHERE u IS NOT NULL ORDER BY 1);
    -- Dependency edits take turns, so two concurrent edits cannot close a cycle between them.
    PERFORM pg_advisory_xact_lock(hashtext('bgtasks.dependencies'));
    SELECT * INTO t FROM background_tasks WHERE id = dependent FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % not found', dependent USING ERRCODE = 'BG404';
    END IF;
    IF t.status <> 'pending' THEN
        RAISE EXCEPTION 'task % is %; dependencies can be added to pending tasks only', dependent, t.status
            USING ERRCODE = 'BG409';
    END IF;
    IF cardinality(upstream) = 0 THEN
        RETURN t;
    END IF;
    IF dependent = ANY (upstream) THEN
        RAISE EXCEPTION 'task % cannot depend on itself', dependent
            USING ERRCODE = 'BG422', HINT = 'dependsOn';
    END IF;
    -- Lock the upstream rows (in id order) so none finishes between the count below and our commit; a
    -- completion that commits first is seen here, one that comes later sees our dependency rows.
    PERFORM FROM background_tasks WHERE id = ANY (upstream) AND user_id = t.user_id ORDER BY id FOR SHARE;
    missing := ARRAY(SELECT u FROM unnest(upstream) u
                     WHERE NOT EXISTS (SELECT FROM background_tasks b WHERE b.id = u AND b.user_id = t.user_id));
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION 'dependsOn: task(s) not found: %', array_to_string(missing, ', ')
            USING ERRCODE = 'BG404', HINT = 'dependsOn';
    END IF;
    -- A cycle: the dependent is already upstream of one of its new dependencies.
    WITH RECURSIVE up(id, path) AS (
        SELECT u, ARRAY[u] FROM unnest(upstream) u
        UNION
        SELECT d.depends_on, up.path || d.depends_on
        FROM up JOIN task_dependencies d ON d.task_id = up.id
        WHERE NOT d.depends_on = ANY (up.path)
    )
    SELECT array_to_string(path, ' -> ') INTO cycle_via FROM up WHERE id = dependent LIMIT 1;
    IF cycle_via IS NOT NULL THEN
        RAISE EXCEPTION 'dependsOn: a cycle: % -> % -> %', dependent, cycle_via, dependent
            USING ERRCODE = 'BG422', HINT = 'dependsOn';
    END IF;
    WITH ins AS (
        INSERT INTO task_dependencies (task_id, depends_on)
        SELECT dependent, u FROM unnest(upstream) u ORDER BY u
        ON CONFLICT DO NOTHING
        RETURNING depends_on)
    SELECT array_agg(depends_on) INTO added FROM ins;
    SELECT count(*) INTO unfinished FROM background_tasks
    WHERE id = ANY (coalesce(added, '{}')) AND status IN ('pending', 'processing');
    SELECT id, status INTO dead FROM background_tasks
    WHERE id = ANY (upstream) AND status IN ('error', 'cancelled') ORDER BY id LIMIT 1;
    IF FOUND THEN
        UPDATE background_tasks SET status = 'cancelled',
            cancel_reason = format('dependency %s ended in %s', dead.id, dead.status),
            error_message = coalesce(error_message, format('dependency %s ended in %s', dead.id, dead.status)),
            waiting_for = waiting_for + unfinished
        WHERE id = dependent RETURNING * INTO t;
    ELSIF unfinished > 0 THEN
        UPDATE background_tasks SET waiting_for = waiting_for + unfinished WHERE id = dependent RETURNING * INTO t;
    END IF;
    RETURN t;
END
$$;

COMMENT ON FUNCTION public.add_task_dependencies(dependent text, upstream text[]) IS 'Make a pending task wait for others (same owner): refuses unknown ids (BG404) and cycles (BG422); completed ones do not count; a failed or cancelled one cancels it at once.';

CREATE FUNCTION public.append_task_output(p_task text, p_attempt integer, p_text text, p_max_chars integer) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    used bigint;
    kept text;
    n bigint;
BEGIN
    -- Only the attempt holding the task writes (a cancelled, reaped or finished task takes no more output).
    PERFORM 1 FROM background_tasks WHERE id = p_task AND attempt = p_attempt AND status = 'processing';
    IF NOT FOUND OR p_text = '' THEN
        RETURN NULL;
    END IF;
    DELETE FROM task_output WHERE task_id = p_task AND attempt < p_attempt;
    SELECT coalesce(sum(length(chunk)), 0) INTO used FROM task_output WHERE task_id = p_task;
    kept := left(p_text, greatest(0, p_max_chars - used)::integer);
    IF kept = '' THEN
        RETURN NULL;  -- over the bound: the rest shows in the result
    END IF;
    INSERT INTO task_output (task_id, attempt, chunk) VALUES (p_task, p_attempt, kept) RETURNING seq INTO n;
    PERFORM pg_notify('bgtasks_output', json_build_object('id', p_task, 'seq', n)::text);
    RETURN n;
END $$;

COMMENT ON FUNCTION public.append_task_output(p_task text, p_attempt integer, p_text text, p_max_chars integer) IS 'Append text to a running task''s partial output (attempt p_attempt must hold it), keeping at most p_max_chars characters per task; NOTIFY bgtasks_output {"id","seq"}. Returns the chunk''s change number, or NULL when nothing was written.';

CREATE FUNCTION public.background_tasks_after_delete() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.background_tasks_after_finish() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    finished background_tasks[] := ARRAY(
        SELECT n::background_tasks FROM new_rows n JOIN old_rows o USING (id)
        WHERE n.status IN ('completed', 'error', 'cancelled') AND n.status <> o.status);
BEGIN
    IF cardinality(finished) > 0 THEN
        PERFORM task_finish_stats_add(finished);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION public.background_tasks_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    since timestamptz := clock_timestamp() - interval '60 seconds';
BEGIN
    PERFORM notify_in_chunks('bgtasks_tasks', ARRAY(
        SELECT format('{"id":%s,"status":"%s","seq":%s}', to_json(id), status, change_seq) FROM new_rows));
    INSERT INTO task_counts AS c (user_id, task_type, status, shard, n)
    SELECT user_id, task_type, status, pg_backend_pid() % 16, count(*) FROM new_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, task_type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    INSERT INTO task_creation_counts AS c (user_id, second, shard, n)
    SELECT user_id, date_trunc('second', created_at), pg_backend_pid() % 4, count(*) FROM new_rows
    WHERE created_at > since
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (user_id, second, shard) DO UPDATE SET n = c.n + excluded.n;
    DELETE FROM task_creation_counts c
    WHERE c.user_id IN (SELECT DISTINCT user_id FROM new_rows) AND c.second <= since;
    -- Inserted finished within the ring of 0020_finish_stats.sql (psql; an import's old rows are skipped here).
    IF EXISTS (SELECT FROM new_rows WHERE status <> 'pending' AND completed_at > now() - interval '630 seconds') THEN
        PERFORM task_finish_stats_add(ARRAY(SELECT n::background_tasks FROM new_rows n
                                            WHERE n.status <> 'pending' AND n.completed_at > now() - interval '630 seconds'));
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION public.background_tasks_after_truncate() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM task_counts;
    DELETE FROM task_creation_counts;
    PERFORM pg_notify('bgtasks_tasks', '[{"id":"*","status":"deleted","seq":0}]');
    RETURN NULL;
END
$$;

CREATE FUNCTION public.background_tasks_after_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    entries text[];
    payload text;
BEGIN
    SELECT array_agg(format('{"id":%s,"status":"%s","seq":%s}', to_json(n.id), n.status, n.change_seq))
    INTO entries
    FROM new_rows n JOIN old_rows o USING (id) WHERE n.change_seq <> o.change_seq;
    IF entries IS NOT NULL THEN
        payload := array_to_string(entries, ',');
        IF length(payload) <= 7000 THEN
            PERFORM pg_notify('bgtasks_tasks', '[' || payload || ']');
        ELSE
            PERFORM notify_in_chunks('bgtasks_tasks', entries);
        END IF;
    END IF;
    INSERT INTO task_counts AS c (user_id, task_type, status, shard, n)
    SELECT k.user_id, k.task_type, k.status, pg_backend_pid() % 16, sum(k.d)
    FROM new_rows n JOIN old_rows o USING (id)
    CROSS JOIN LATERAL (VALUES (n.user_id, n.task_type, n.status, 1), (o.user_id, o.task_type, o.status, -1))
        AS k(user_id, task_type, status, d)
    WHERE (n.status, n.user_id, n.task_type) IS DISTINCT FROM (o.status, o.user_id, o.task_type)
    GROUP BY 1, 2, 3 HAVING sum(k.d) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, task_type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION public.background_tasks_before_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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
        ELSIF NEW.status = 'processing' AND NEW.lease_expires_at IS NULL THEN
            -- Not a claim (a claim sets worker, attempt and lease itself): a new attempt, held by whoever
            -- made the change, for the default lease. Nobody extends it: the reaper takes the task back.
            NEW.lease_expires_at := now() + interval '30 seconds';
            IF NEW.started_at IS NOT DISTINCT FROM OLD.started_at THEN NEW.started_at := now(); END IF;
            IF NEW.attempt = OLD.attempt THEN NEW.attempt := OLD.attempt + 1; END IF;
            IF NEW.worker_id IS NOT DISTINCT FROM OLD.worker_id THEN
                NEW.worker_id := 'sql:' || session_user;
            END IF;
        END IF;
    END IF;
    NEW.change_seq := nextval('background_task_changes');
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION public.background_tasks_before_delete() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT FROM task_dependencies d WHERE d.depends_on = OLD.id) THEN
        PERFORM cancel_downstream(ARRAY[OLD.id], ARRAY['was deleted']);
    END IF;
    RETURN OLD;
END
$$;

CREATE FUNCTION public.background_tasks_release_dependents() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    completed_ids text[];
    failed_ids text[];
    failed_whys text[];
BEGIN
    SELECT array_agg(n.id) FILTER (WHERE n.status = 'completed'),
           array_agg(n.id) FILTER (WHERE n.status <> 'completed'),
           array_agg('ended in ' || n.status::text) FILTER (WHERE n.status <> 'completed')
    INTO completed_ids, failed_ids, failed_whys
    FROM new_rows n
    WHERE n.status IN ('completed', 'error', 'cancelled')
      AND EXISTS (SELECT FROM task_dependencies d WHERE d.depends_on = n.id)
      AND EXISTS (SELECT FROM old_rows o WHERE o.id = n.id AND o.status <> n.status);
    -- Nothing became final that others wait on: the common case, and the end of the nested statements below
    -- (statement triggers fire even for an UPDATE of no rows).
    IF completed_ids IS NULL AND failed_ids IS NULL THEN
        RETURN NULL;
    END IF;
    IF failed_ids IS NOT NULL THEN
        PERFORM cancel_downstream(failed_ids, failed_whys);
    END IF;
    IF completed_ids IS NOT NULL THEN
        -- Each completed upstream task releases one wait. Dependents already finished are left alone.
        UPDATE background_tasks t SET waiting_for = greatest(0, t.waiting_for - r.n)
        FROM (
            SELECT d.task_id, count(*)::integer AS n FROM task_dependencies d
            WHERE d.depends_on = ANY (completed_ids)
            GROUP BY d.task_id ORDER BY d.task_id
        ) r
        WHERE t.id = r.task_id AND t.status = 'pending' AND t.waiting_for > 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION public.cancel_downstream(roots text[], whys text[]) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    n integer;
BEGIN
    WITH why AS (SELECT * FROM unnest(roots, whys) AS w(root, what)),
    doomed AS (
        SELECT d.task_id,
               CASE WHEN d.via = d.root THEN format('dependency %s %s', d.root, w.what)
                    ELSE format('dependency %s was cancelled: upstream task %s %s', d.via, d.root, w.what)
               END AS reason
        FROM task_downstream(roots) d JOIN why w USING (root)
        ORDER BY d.task_id
    )
    UPDATE background_tasks t SET status = 'cancelled', cancel_reason = doomed.reason,
                                  error_message = coalesce(t.error_message, doomed.reason)
    FROM doomed
    WHERE t.id = doomed.task_id AND t.status IN ('pending', 'processing');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION public.cancel_downstream(roots text[], whys text[]) IS 'Cancel the unfinished tasks downstream of roots (cancel_reason names the dependency and the root). Returns how many.';

CREATE FUNCTION public.cancel_task(task_id text, reason text DEFAULT 'cancelled by user'::text) RETURNS public.background_tasks
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.cancel_task(task_id text, reason text) IS 'Cancel a pending or processing task (a running actor is told through NOTIFY and stops). Refuses finished tasks.';

CREATE FUNCTION public.check_creation_rate(who text, n_new integer DEFAULT 1) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    lim integer := user_creation_limit(who);
    since timestamptz;
    recent integer;
    over integer;
    oldest timestamptz;
    wait_s integer;
BEGIN
    IF lim IS NULL OR n_new <= 0 THEN
        RETURN;
    END IF;
    IF n_new > lim THEN
        RAISE EXCEPTION 'creating % tasks at once is more than the % per minute allowed for user %', n_new, lim, who
            USING ERRCODE = 'BG429', DETAIL = '60';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('bgtasks.rate:' || who));
    since := clock_timestamp() - interval '60 seconds';
    SELECT coalesce(sum(n), 0) INTO recent FROM task_creation_counts WHERE user_id = who AND second > since;
    over := recent + n_new - lim;
    IF over <= 0 THEN
        RETURN;
    END IF;
    -- Room for n_new comes when the `over` oldest tasks of the window have aged out of it.
    SELECT s.second INTO oldest FROM (
        SELECT c.second, sum(sum(c.n)) OVER (ORDER BY c.second) AS so_far
        FROM task_creation_counts c WHERE c.user_id = who AND c.second > since GROUP BY c.second) s
    WHERE s.so_far >= over ORDER BY s.second LIMIT 1;
    wait_s := greatest(1, ceil(extract(epoch FROM oldest + interval '60 seconds' - clock_timestamp()))::integer);
    RAISE EXCEPTION 'rate limit: user % created % tasks in the last minute (limit %); retry in % s',
        who, recent, lim, wait_s
        USING ERRCODE = 'BG429', DETAIL = wait_s::text, HINT = 'Retry-After: ' || wait_s;
END
$$;

COMMENT ON FUNCTION public.check_creation_rate(who text, n_new integer) IS 'Call before creating n_new tasks for a user, in the same transaction: raises SQLSTATE BG429 (DETAIL: seconds to wait, for Retry-After) when over user_limits.max_created_per_minute (the sum of task_creation_counts over the last 60 seconds).';

CREATE FUNCTION public.check_schedule_quota(who text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    lim integer := (SELECT max_schedules FROM user_limits_for(who));
    n integer;
BEGIN
    IF lim IS NULL THEN
        RETURN;
    END IF;
    -- One creator per user at a time, until its transaction ends, so two API processes cannot both take the
    -- last place (the count is a fresh snapshot: each plpgsql statement takes one).
    PERFORM pg_advisory_xact_lock(hashtext('bgtasks.schedules:' || who));
    SELECT count(*) INTO n FROM task_schedules WHERE user_id = who;
    IF n >= lim THEN
        RAISE EXCEPTION 'user % has % schedules, the most allowed (user_limits.max_schedules); delete one first',
            who, n USING ERRCODE = 'BGLIM', HINT = 'max_schedules';
    END IF;
END
$$;

COMMENT ON FUNCTION public.check_schedule_quota(who text) IS 'Call before creating a schedule for a user, in the same transaction: raises SQLSTATE BGLIM when the user owns max_schedules already.';

CREATE FUNCTION public.claim_share(worker text, max_tasks integer, lease_seconds double precision, finishing integer DEFAULT 0) RETURNS integer
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    lim integer;
    total_concurrency bigint;
    own_concurrency integer;
    others_waiting boolean;
    running integer;
BEGIN
    SELECT max_concurrent_tasks INTO lim FROM task_queue_settings WHERE id = 1;
    IF lim IS NULL OR max_tasks <= 0 THEN
        RETURN max_tasks;
    END IF;
    SELECT sum(w.concurrency), bool_or(w.worker_id <> worker AND w.claim_short_at
                                        > now() - make_interval(secs => lease_seconds)),
           max(w.concurrency) FILTER (WHERE w.worker_id = worker)
    INTO total_concurrency, others_waiting, own_concurrency
    FROM bgtasks_workers w
    WHERE w.stopped_at IS NULL AND w.heartbeat_at > now() - make_interval(secs => lease_seconds);
    IF NOT coalesce(others_waiting, false) OR own_concurrency IS NULL THEN
        RETURN max_tasks;
    END IF;
    SELECT count(*) INTO running FROM background_tasks t WHERE t.status = 'processing' AND t.worker_id = worker;
    RETURN least(max_tasks, greatest(0, ceil(lim::numeric * own_concurrency / total_concurrency)::integer
                                        - (running - finishing)));
END
$$;

COMMENT ON FUNCTION public.claim_share(worker text, max_tasks integer, lease_seconds double precision, finishing integer) IS 'How many of max_tasks a worker may claim: all, unless max_concurrent_tasks is set and another live worker''s claim came back short; then up to its share of the limit (limit x its concurrency / live workers'' concurrency, rounded up), less what it runs (finishing: of those, how many it is completing now).';

CREATE FUNCTION public.claim_tasks(worker text, max_tasks integer, lease_seconds double precision) RETURNS SETOF public.background_tasks
    LANGUAGE plpgsql
    AS $$
DECLARE
    settings task_queue_settings;
    free integer := max_tasks;
    limited boolean;
    picked text[];
    n_claimed integer;
    rounds integer := 0;
    served text[] := worker_task_types(worker);  -- NULL: a worker that published nothing claims any type
BEGIN
    SELECT * INTO settings FROM task_queue_settings WHERE id = 1;
    IF NOT FOUND OR NOT settings.is_active OR max_tasks <= 0 THEN
        RETURN;
    END IF;
    limited := EXISTS (SELECT FROM user_limits WHERE max_running IS NOT NULL)
               OR EXISTS (SELECT FROM task_type_limits);
    IF settings.max_concurrent_tasks IS NOT NULL OR limited THEN
        -- Claimers take turns: the running rows counted below (a fresh snapshot per statement) are exact.
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
    -- Lock first, then update the list in a second statement: its snapshot sees every row the first locked
    -- (a task inserted just before the lock would be invisible to one statement's older snapshot).
    -- Under a per-type limit a round may keep fewer than it locked: an owner's share is taken in priority
    -- order before the rows over a type's room are dropped. Those slots are claimed again at once, in a
    -- further round that sees this round's rows as processing (each statement takes a fresh snapshot, and
    -- our own changes are in it), so the types filled now are skipped and other types take the free slots.
    LOOP
        rounds := rounds + 1;
        SELECT array_agg(p.id) INTO picked FROM lock_tasks_to_claim(free, limited, served) AS p(id);
        EXIT WHEN picked IS NULL;
        RETURN QUERY
        UPDATE background_tasks t
        SET status = 'processing', worker_id = worker, attempt = t.attempt + 1, started_at = now(),
            lease_expires_at = now() + make_interval(secs => lease_seconds)
        WHERE t.id = ANY (picked)
        RETURNING t.*;
        GET DIAGNOSTICS n_claimed = ROW_COUNT;
        free := free - n_claimed;
        -- Only a per-type limit drops locked rows (a user's limit bounds the share before locking), and only
        -- when this round filled such a type; otherwise a short round means the queue has no more for us, and
        -- asking again would cost a second search of it. Each further round fills at least one more type, so a
        -- few suffice (bounded for a table of many limited types).
        EXIT WHEN free <= 0 OR NOT limited OR n_claimed = 0 OR rounds >= 4
                  OR NOT EXISTS (SELECT FROM background_tasks t JOIN task_type_limits l USING (task_type)
                                 WHERE t.id = ANY (picked));
    END LOOP;
END
$$;

COMMENT ON FUNCTION public.claim_tasks(worker text, max_tasks integer, lease_seconds double precision) IS 'Worker claim: up to max_tasks pending tasks (due, not waiting), fair across owners (lock_tasks_to_claim), under is_active, max_concurrent_tasks, and the per-user (user_limits) and per-type (task_type_limits) running limits. Only types the worker serves (task_type_workers). Sets processing, worker_id, attempt + 1 and the lease. Slots a round left empty because a type reached its limit are claimed again at once, for other types (up to 4 rounds; a further round only after one that claimed a type under task_type_limits).';

CREATE FUNCTION public.clear_completed(user_id text DEFAULT NULL::text, project_id text DEFAULT NULL::text) RETURNS integer
    LANGUAGE sql
    AS $$
    WITH gone AS (
        DELETE FROM background_tasks b
        WHERE b.status = 'completed'
          AND (clear_completed.user_id IS NULL OR b.user_id = clear_completed.user_id)
          AND (clear_completed.project_id IS NULL OR b.project_id = clear_completed.project_id)
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

COMMENT ON FUNCTION public.clear_completed(user_id text, project_id text) IS 'Seed one''s clear-completed: delete the completed tasks (of one user and/or project; NULL: all); returns how many. For old finished tasks in bulk, purge_finished_tasks() deletes in small batches.';

CREATE FUNCTION public.complete_and_claim(task_ids text[], claimed_attempts integer[], results jsonb[], worker text, max_tasks integer, lease_seconds double precision) RETURNS SETOF public.background_tasks
    LANGUAGE plpgsql
    AS $$
DECLARE
    settings task_queue_settings;
    picked text[];
    n_done integer := coalesce(cardinality(task_ids), 0);
    n_picked integer;
    served text[] := worker_task_types(worker);  -- NULL: a worker that published nothing claims any type
BEGIN
    SELECT * INTO settings FROM task_queue_settings WHERE id = 1;
    IF max_tasks <= 0 OR NOT settings.is_active OR settings.max_concurrent_tasks IS NOT NULL
       OR EXISTS (SELECT FROM user_limits WHERE max_running IS NOT NULL) OR EXISTS (SELECT FROM task_type_limits)
    THEN
        IF n_done > 0 THEN
            PERFORM complete_tasks(task_ids, claimed_attempts, results);
        END IF;
        IF max_tasks > 0 THEN
            RETURN QUERY SELECT * FROM claim_tasks(worker, max_tasks, lease_seconds);
        END IF;
        RETURN;
    END IF;
    -- Lock the finished rows in id order (as extend_leases() does: a heartbeat and a completion never
    -- deadlock), and what to claim (a SELECT fires no trigger; fair across owners); then change everything
    -- in one UPDATE over a plain list, a form in which rows changed meanwhile are re-checked correctly (EvalPlanQual).
    IF n_done > 0 THEN
        PERFORM FROM background_tasks WHERE id = ANY (task_ids) ORDER BY id FOR UPDATE;
    END IF;
    SELECT array_agg(p.id) INTO picked FROM lock_tasks_to_claim(max_tasks, false, served) AS p(id);
    n_picked := coalesce(cardinality(picked), 0);
    IF n_done = 0 AND n_picked = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH changed AS (  -- finishing: completes the attempt it names, if that attempt still holds the task
        UPDATE background_tasks t SET
            status = CASE WHEN w.finishing THEN 'completed' ELSE 'processing' END::task_status,
            result_data = CASE WHEN w.finishing THEN w.result ELSE t.result_data END,
            error_message = CASE WHEN w.finishing THEN NULL ELSE t.error_message END,
            worker_id = CASE WHEN w.finishing THEN t.worker_id ELSE worker END,
            attempt = CASE WHEN w.finishing THEN t.attempt ELSE t.attempt + 1 END,
            started_at = CASE WHEN w.finishing THEN t.started_at ELSE now() END,
            lease_expires_at = CASE WHEN w.finishing THEN t.lease_expires_at
                                    ELSE now() + make_interval(secs => lease_seconds) END
        FROM unnest(coalesce(task_ids, '{}') || coalesce(picked, '{}'),
                    coalesce(claimed_attempts, '{}') || array_fill(NULL::integer, ARRAY[n_picked]),
                    coalesce(results, '{}') || array_fill(NULL::jsonb, ARRAY[n_picked]),
                    array_fill(true, ARRAY[n_done]) || array_fill(false, ARRAY[n_picked]))
             AS w(id, attempt, result, finishing)
        WHERE t.id = w.id AND (NOT w.finishing OR (t.attempt = w.attempt AND t.status = 'processing'))
        RETURNING t AS task, w.finishing
    )
    SELECT (c.task).* FROM changed c WHERE NOT c.finishing;
END
$$;

COMMENT ON FUNCTION public.complete_and_claim(task_ids text[], claimed_attempts integer[], results jsonb[], worker text, max_tasks integer, lease_seconds double precision) IS 'Worker: complete its finished tasks and claim up to max_tasks, fair across owners, in one transaction (one statement when no limit applies). Claims only types the worker serves (task_type_workers). Returns the claimed tasks.';

CREATE FUNCTION public.complete_task(task_id text, claimed_attempt integer, result_json jsonb) RETURNS boolean
    LANGUAGE sql
    AS $$
    WITH done AS (
        UPDATE background_tasks SET status = 'completed', result_data = result_json, error_message = NULL
        WHERE id = task_id AND attempt = claimed_attempt AND status = 'processing'
        RETURNING 1)
    SELECT EXISTS (SELECT FROM done)
$$;

COMMENT ON FUNCTION public.complete_task(task_id text, claimed_attempt integer, result_json jsonb) IS 'Worker: mark a task completed with its result, only if that attempt still holds it (never a cancelled task).';

CREATE FUNCTION public.complete_tasks(task_ids text[], claimed_attempts integer[], results jsonb[]) RETURNS SETOF text
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM FROM background_tasks WHERE id = ANY (task_ids) ORDER BY id FOR UPDATE;
    RETURN QUERY
    UPDATE background_tasks t SET status = 'completed', result_data = r.result, error_message = NULL
    FROM unnest(task_ids, claimed_attempts, results) AS r(id, attempt, result)
    WHERE t.id = r.id AND t.attempt = r.attempt AND t.status = 'processing'
    RETURNING t.id;
END
$$;

COMMENT ON FUNCTION public.complete_tasks(task_ids text[], claimed_attempts integer[], results jsonb[]) IS 'Worker: complete_task for a batch in one statement (one NOTIFY); returns the ids it completed.';

CREATE FUNCTION public.enqueue_task(task_type text, user_id text, payload jsonb DEFAULT '{}'::jsonb, priority integer DEFAULT 0, max_retries integer DEFAULT 3, project_id text DEFAULT NULL::text, project_name text DEFAULT NULL::text, project_path text DEFAULT NULL::text, label text DEFAULT NULL::text, description text DEFAULT NULL::text, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, idempotency_key text DEFAULT NULL::text) RETURNS public.background_tasks
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.enqueue_task(task_type text, user_id text, payload jsonb, priority integer, max_retries integer, project_id text, project_name text, project_path text, label text, description text, run_at timestamp with time zone, idempotency_key text) IS 'Create a task as POST /api/tasks does (the insert trigger notifies workers and live streams at once); returns the row. A repeated (user_id, idempotency_key) returns the first task. Unlike the API it does not check the payload against the type''s schema: a worker fails a task whose type it does not serve.';

CREATE FUNCTION public.extend_leases(worker text, task_ids text[], lease_seconds double precision) RETURNS SETOF text
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM FROM background_tasks WHERE id = ANY (task_ids) AND worker_id = worker AND status = 'processing'
    ORDER BY id FOR UPDATE;
    RETURN QUERY
    UPDATE background_tasks SET lease_expires_at = now() + make_interval(secs => lease_seconds)
    WHERE id = ANY (task_ids) AND worker_id = worker AND status = 'processing'
    RETURNING id;
END
$$;

COMMENT ON FUNCTION public.extend_leases(worker text, task_ids text[], lease_seconds double precision) IS 'Worker heartbeat: push the leases of its running tasks forward; returns the ids it still holds.';

CREATE FUNCTION public.fail_task(task_id text, claimed_attempt integer, error_type text, message text, permanent boolean DEFAULT false, retry_after_seconds double precision DEFAULT NULL::double precision) RETURNS public.task_status
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.fail_task(task_id text, claimed_attempt integer, error_type text, message text, permanent boolean, retry_after_seconds double precision) IS 'Worker: record a failed attempt; back to pending after backoff (or Retry-After) while retries remain, else error.';

CREATE FUNCTION public.lock_tasks_to_claim(max_tasks integer, limited boolean DEFAULT false, served text[] DEFAULT NULL::text[]) RETURNS SETOF text
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_sort TO 'off'
    AS $$
BEGIN
    -- plpgsql, not sql: its plan is cached per session (a SQL function with SET clauses is planned per call,
    -- which cost more than running it).
    RETURN QUERY
    WITH RECURSIVE owners(user_id) AS (  -- each owner with claimable rows: one index descent per owner
        (SELECT c.user_id FROM claimable_tasks c ORDER BY c.user_id LIMIT 1)
        UNION ALL
        SELECT (SELECT c.user_id FROM claimable_tasks c WHERE c.user_id > o.user_id ORDER BY c.user_id LIMIT 1)
        FROM owners o WHERE o.user_id IS NOT NULL
    ), running AS MATERIALIZED (
        SELECT r.user_id, r.task_type, count(*)::integer AS n FROM background_tasks r
        WHERE r.status = 'processing' GROUP BY 1, 2
    ), queued AS MATERIALIZED (  -- owners with room: running now, and how many more their own limit allows
        SELECT q.user_id, q.running, q.lim - q.running AS room FROM (
            SELECT o.user_id, (SELECT coalesce(sum(r.n), 0)::integer FROM running r WHERE r.user_id = o.user_id)
                   AS running, CASE WHEN limited THEN user_running_limit(o.user_id) END AS lim
            FROM owners o WHERE o.user_id IS NOT NULL) q
        WHERE q.lim IS NULL OR q.lim > q.running
    ), level AS (
        SELECT min(ceil((max_tasks + w.below)::numeric / w.j))::integer AS t FROM (
            SELECT sum(q.running) OVER (ORDER BY q.running, q.user_id) AS below,
                   row_number() OVER (ORDER BY q.running, q.user_id) AS j
            FROM queued q) w
    ), type_room AS MATERIALIZED (
        SELECT l.task_type, l.max_running - coalesce(sum(r.n), 0)::integer AS room
        FROM task_type_limits l LEFT JOIN running r USING (task_type)
        WHERE limited GROUP BY l.task_type, l.max_running
    ), share AS (  -- twice the share: what owners with less queued than their share leave, others fill
        SELECT q.user_id, q.running, least(max_tasks, coalesce(q.room, max_tasks), 2 * (l.t - q.running)) AS k,
               -- types with no room, as a plain array: an anti-join here would turn the owner's ordered
               -- index scan into a scan of all their rows and a sort
               (SELECT coalesce(array_agg(y.task_type), '{}') FROM type_room y WHERE y.room <= 0) AS full_types
        FROM queued q, level l
        WHERE l.t > q.running
    ), locked AS (  -- each owner's share, in its own order, skipping rows another claimer holds
        SELECT s.running, c.* FROM share s CROSS JOIN LATERAL (
            SELECT c.id, c.user_id, c.task_type, c.priority, c.run_at FROM claimable_tasks c
            WHERE c.user_id = s.user_id AND c.due
              AND (served IS NULL OR c.task_type = ANY (served))
              AND c.task_type <> ALL (s.full_types)
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT s.k
            FOR UPDATE OF c SKIP LOCKED) c
    ), turns AS (
        SELECT l.id, l.task_type, l.run_at,
               l.running + row_number() OVER (PARTITION BY l.user_id ORDER BY l.priority DESC, l.run_at, l.id)
                   AS turn
        FROM locked l
    ), typed AS (  -- under a per-type limit, the k-th task of a type fits if running + k stays within it
        SELECT t.id, t.task_type, t.turn, t.run_at,
               row_number() OVER (PARTITION BY t.task_type ORDER BY t.turn, t.run_at, t.id) AS type_rank
        FROM turns t
    )
    SELECT t.id FROM typed t LEFT JOIN type_room y USING (task_type)
    WHERE t.type_rank <= coalesce(y.room, t.type_rank)
    ORDER BY t.turn, t.run_at, t.id
    LIMIT max_tasks;
END
$$;

COMMENT ON FUNCTION public.lock_tasks_to_claim(max_tasks integer, limited boolean, served text[]) IS 'Claim order, fair across owners: locks (FOR UPDATE SKIP LOCKED) and returns up to max_tasks claimable task ids (claimable_tasks, due), round-robin by owner (running tasks + rank by priority, then age); limited: also under user_limits.max_running and task_type_limits; served: only these task types (NULL: any). Called by claim_tasks() and complete_and_claim().';

CREATE FUNCTION public.model_call_cost(p_model text, p_prompt integer, p_cached integer, p_completion integer) RETURNS numeric
    LANGUAGE sql STABLE
    AS $$
    SELECT ((greatest(p_prompt - p_cached, 0) * prompt_per_million + least(p_cached, p_prompt) * cached_prompt_per_million
             + p_completion * completion_per_million) / 1000000)::numeric(18, 10)
    FROM model_prices
    WHERE p_model = model OR p_model LIKE replace(replace(model, '\', '\\'), '%', '\%') || '%'
    ORDER BY length(model) DESC
    LIMIT 1
$$;

COMMENT ON FUNCTION public.model_call_cost(p_model text, p_prompt integer, p_cached integer, p_completion integer) IS 'Cost in USD of a call of model p_model with these prompt, cached prompt and completion tokens, at the longest matching model_prices row; NULL without one.';

CREATE FUNCTION public.note_claim(worker text, asked integer, got integer) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF (SELECT max_concurrent_tasks FROM task_queue_settings WHERE id = 1) IS NULL THEN
        RETURN;
    END IF;
    IF got < asked THEN  -- at most one write a second per waiting worker
        UPDATE bgtasks_workers SET claim_short_at = now()
        WHERE worker_id = worker AND (claim_short_at IS NULL OR claim_short_at < now() - interval '1 second');
    ELSE
        UPDATE bgtasks_workers SET claim_short_at = NULL WHERE worker_id = worker AND claim_short_at IS NOT NULL;
    END IF;
END
$$;

COMMENT ON FUNCTION public.note_claim(worker text, asked integer, got integer) IS 'Worker: its claim asked for `asked` tasks and got `got`; under max_concurrent_tasks a short claim marks it waiting (bgtasks_workers.claim_short_at), a full one clears that.';

CREATE FUNCTION public.notify_api_key_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('bgtasks_keys', json_build_object('id', OLD.id, 'change', 'deleted')::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('bgtasks_keys', json_build_object(
        'id', NEW.id, 'change', CASE WHEN NEW.revoked_at IS NOT NULL THEN 'revoked' ELSE 'changed' END)::text);
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION public.notify_api_key_change() IS 'Trigger: NOTIFY bgtasks_keys {"id", "change": revoked|changed|deleted} when a key is revoked, deleted or acts as someone else; API processes close the streams opened with it.';

CREATE FUNCTION public.notify_in_chunks(channel text, entries text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    entry text;
    chunk text := array_to_string(entries, ',');
BEGIN
    IF length(chunk) <= 7000 THEN
        IF chunk <> '' THEN
            PERFORM pg_notify(channel, '[' || chunk || ']');
        END IF;
        RETURN;
    END IF;
    chunk := '';
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

COMMENT ON FUNCTION public.notify_in_chunks(channel text, entries text[]) IS 'pg_notify the entries as JSON arrays of at most ~7000 bytes each.';

CREATE TABLE public.task_queue_settings (
    id integer DEFAULT 1 NOT NULL,
    is_active boolean DEFAULT true NOT NULL,
    poll_interval integer DEFAULT 5000 NOT NULL,
    max_concurrent_tasks integer,
    retry_base_delay_ms integer DEFAULT 2000 NOT NULL,
    retry_max_delay_ms integer DEFAULT 600000 NOT NULL,
    last_poll_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT task_queue_settings_id_check CHECK ((id = 1)),
    CONSTRAINT task_queue_settings_max_concurrent_tasks_check CHECK ((max_concurrent_tasks >= 0)),
    CONSTRAINT task_queue_settings_poll_interval_check CHECK (((poll_interval >= 10) AND (poll_interval <= 3600000))),
    CONSTRAINT task_queue_settings_retry_base_delay_ms_check CHECK ((retry_base_delay_ms >= 0)),
    CONSTRAINT task_queue_settings_retry_max_delay_ms_check CHECK ((retry_max_delay_ms >= 0))
);

COMMENT ON TABLE public.task_queue_settings IS 'The queue''s settings, one row (id = 1), as in seed one. Workers read it at every claim: an UPDATE takes effect at once, no restart.';

COMMENT ON COLUMN public.task_queue_settings.id IS 'Always 1.';

COMMENT ON COLUMN public.task_queue_settings.is_active IS 'false: no worker claims new tasks (running ones finish). Seed one''s start/stop.';

COMMENT ON COLUMN public.task_queue_settings.poll_interval IS 'Milliseconds between a worker''s fallback polls; workers also wake on NOTIFY at once.';

COMMENT ON COLUMN public.task_queue_settings.max_concurrent_tasks IS 'Most tasks processing at once over all workers and hosts; NULL: no global limit.';

COMMENT ON COLUMN public.task_queue_settings.retry_base_delay_ms IS 'Retry backoff: the first retry waits about this long, doubling each time (with jitter).';

COMMENT ON COLUMN public.task_queue_settings.retry_max_delay_ms IS 'Retry backoff never waits longer than this.';

COMMENT ON COLUMN public.task_queue_settings.last_poll_at IS 'When a worker last polled the queue (seed one).';

COMMENT ON COLUMN public.task_queue_settings.created_at IS 'When the row was created.';

COMMENT ON COLUMN public.task_queue_settings.updated_at IS 'When a setting last changed.';

CREATE FUNCTION public.pause_queue() RETURNS public.task_queue_settings
    LANGUAGE sql
    AS $$
    UPDATE task_queue_settings SET is_active = false WHERE id = 1 RETURNING *
$$;

COMMENT ON FUNCTION public.pause_queue() IS 'Stop the queue (seed one''s stop): no worker claims a new task from the next claim on; running tasks finish. NOTIFYs bgtasks_queue.';

CREATE FUNCTION public.postpone_for_budget(waiting_task text, claimed_attempt integer, budget_provider text, budget_model text, wait_seconds double precision, message text) RETURNS public.task_status
    LANGUAGE plpgsql
    AS $$
DECLARE
    t background_tasks;
    wait double precision := greatest(coalesce(wait_seconds, 0), 0);
BEGIN
    SELECT * INTO t FROM background_tasks
    WHERE id = waiting_task AND attempt = claimed_attempt AND status = 'processing' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;  -- cancelled, taken back or deleted meanwhile
    END IF;
    INSERT INTO task_attempt_errors (task_id, attempt, worker_id, error_type, error_message, outcome, started_at)
    VALUES (t.id, t.attempt, t.worker_id, 'WaitingForBudget', message, 'budget_wait', t.started_at);
    INSERT INTO provider_budget_waits (task_id, provider, model, until)
    VALUES (t.id, budget_provider, budget_model, now() + make_interval(secs => wait))
    ON CONFLICT (task_id) DO UPDATE SET provider = EXCLUDED.provider, model = EXCLUDED.model, until = EXCLUDED.until;
    UPDATE background_tasks SET
        status = 'pending',
        run_at = now() + make_interval(secs => wait),
        description = format('Waiting for the provider''s budget (%s, model %s): runs again in %s s',
                             budget_provider, budget_model, round(wait::numeric, 1))
    WHERE id = t.id;
    RETURN 'pending';
END
$$;

COMMENT ON FUNCTION public.postpone_for_budget(waiting_task text, claimed_attempt integer, budget_provider text, budget_model text, wait_seconds double precision, message text) IS 'Worker: a provider budget had no room for this attempt''s model call; back to pending until its turn (run_at), without counting a retry, recorded as outcome budget_wait.';

CREATE FUNCTION public.postpone_rate_limited(task_id text, claimed_attempt integer, error_type text, message text, retry_after_seconds double precision, max_wait_seconds double precision) RETURNS public.task_status
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.postpone_rate_limited(task_id text, claimed_attempt integer, error_type text, message text, retry_after_seconds double precision, max_wait_seconds double precision) IS 'Worker: the provider rate-limited this attempt (429); back to pending after Retry-After (or backoff) without counting a retry, while the task''s total wait stays within max_wait_seconds; past it, fail_task().';

CREATE TABLE public.provider_budget_reservations (
    id bigint NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    task_id text,
    tokens integer NOT NULL,
    reserved_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    settled_at timestamp with time zone,
    counts_until timestamp with time zone NOT NULL,
    CONSTRAINT provider_budget_reservations_tokens_check CHECK ((tokens >= 0))
);

COMMENT ON TABLE public.provider_budget_reservations IS 'Model calls counted against a provider budget: one row per call, from its reservation until a window after it ended (counts_until); rows past it are deleted by the next reservation. SELECT provider, model, count(*), sum(tokens) FROM provider_budget_reservations WHERE counts_until > now() GROUP BY 1, 2.';

COMMENT ON COLUMN public.provider_budget_reservations.id IS 'The reservation, as settle_provider_budget() names it.';

COMMENT ON COLUMN public.provider_budget_reservations.provider IS 'The budget (provider_budgets) the call counts against.';

COMMENT ON COLUMN public.provider_budget_reservations.model IS 'The model of the budget the call counts against (''*'' for the provider''s shared row).';

COMMENT ON COLUMN public.provider_budget_reservations.task_id IS 'The task that made the call.';

COMMENT ON COLUMN public.provider_budget_reservations.tokens IS 'The token estimate while the call runs; its actual total_tokens once settled.';

COMMENT ON COLUMN public.provider_budget_reservations.reserved_at IS 'When the call was let through.';

COMMENT ON COLUMN public.provider_budget_reservations.settled_at IS 'When the call ended (NULL: still running, or its worker died: it then counts until counts_until).';

COMMENT ON COLUMN public.provider_budget_reservations.counts_until IS 'The call stops counting then: a window after it ended (it reached the provider before that), or, while it runs, a window after its longest possible end.';

CREATE FUNCTION public.provider_budget_expected_end(r public.provider_budget_reservations, window_seconds double precision, at timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT CASE WHEN r.settled_at IS NOT NULL THEN r.counts_until
                ELSE greatest(r.reserved_at + make_interval(secs => window_seconds),
                              at + make_interval(secs => window_seconds / 10)) END
$$;

COMMENT ON FUNCTION public.provider_budget_expected_end(r public.provider_budget_reservations, window_seconds double precision, at timestamp with time zone) IS 'When a call counted against a budget is expected to free its room: counts_until once settled; while it runs, a window after it started (at the earliest a tenth of a window from now).';

CREATE TABLE public.provider_budgets (
    provider text NOT NULL,
    model text DEFAULT '*'::text NOT NULL,
    requests_per_minute integer,
    tokens_per_minute integer,
    window_seconds double precision DEFAULT 60 NOT NULL,
    shrink_factor double precision DEFAULT 1 NOT NULL,
    shrunk_at timestamp with time zone,
    blocked_until timestamp with time zone,
    provider_requests_left integer,
    provider_requests_reset_at timestamp with time zone,
    provider_tokens_left bigint,
    provider_tokens_reset_at timestamp with time zone,
    provider_observed_at timestamp with time zone,
    waits bigint DEFAULT 0 NOT NULL,
    rate_limited bigint DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT provider_budgets_model_check CHECK ((model <> ''::text)),
    CONSTRAINT provider_budgets_provider_check CHECK ((provider <> ''::text)),
    CONSTRAINT provider_budgets_requests_per_minute_check CHECK ((requests_per_minute > 0)),
    CONSTRAINT provider_budgets_shrink_factor_check CHECK (((shrink_factor > (0)::double precision) AND (shrink_factor <= (1)::double precision))),
    CONSTRAINT provider_budgets_tokens_per_minute_check CHECK ((tokens_per_minute > 0)),
    CONSTRAINT provider_budgets_window_seconds_check CHECK (((window_seconds > (0)::double precision) AND (window_seconds <= (3600)::double precision)))
);

COMMENT ON TABLE public.provider_budgets IS 'How much every worker together may ask of a model provider: requests and tokens per minute per provider (the base URL calls go to, e.g. https://api.openai.com/v1) and model (''*'': every model of that provider without a row of its own). Change it with UPDATE, the API (PUT /api/provider-budgets) or `bgtasks budgets set`; the next reservation anywhere reads it.';

COMMENT ON COLUMN public.provider_budgets.provider IS 'The base URL model calls go to (OPENAI_BASE_URL without a trailing slash; https://api.openai.com/v1 when unset).';

COMMENT ON COLUMN public.provider_budgets.model IS 'The model name the calls ask for, or ''*'' for every model of the provider without a row of its own.';

COMMENT ON COLUMN public.provider_budgets.requests_per_minute IS 'Most model calls started in any window_seconds (a minute unless shortened); NULL: not limited.';

COMMENT ON COLUMN public.provider_budgets.tokens_per_minute IS 'Most tokens (prompt + completion) in any window_seconds: a call reserves its estimate (prompt characters / 4 + its output limit), corrected to its actual usage when it ends; NULL: not limited.';

COMMENT ON COLUMN public.provider_budgets.window_seconds IS 'The length of the "minute" the limits count over: 60 for a provider''s per-minute limits; shorter only to test.';

COMMENT ON COLUMN public.provider_budgets.shrink_factor IS 'Adapted, not configured: halved by each 429 the provider answers (down to 0.1); the limits in effect are the configured ones times this factor, which climbs back to 1 over one window after shrunk_at.';

COMMENT ON COLUMN public.provider_budgets.shrunk_at IS 'When a 429 last shrank the budget (shrink_factor).';

COMMENT ON COLUMN public.provider_budgets.blocked_until IS 'No call starts before this: the provider''s Retry-After on a 429, or its reset time when it said nothing is left.';

COMMENT ON COLUMN public.provider_budgets.provider_requests_left IS 'The provider''s own count (x-ratelimit-remaining-requests) at provider_observed_at; calls settled since count against it until provider_requests_reset_at.';

COMMENT ON COLUMN public.provider_budgets.provider_requests_reset_at IS 'When the provider said its request limit resets (x-ratelimit-reset-requests).';

COMMENT ON COLUMN public.provider_budgets.provider_tokens_left IS 'The provider''s own count (x-ratelimit-remaining-tokens) at provider_observed_at.';

COMMENT ON COLUMN public.provider_budgets.provider_tokens_reset_at IS 'When the provider said its token limit resets (x-ratelimit-reset-tokens).';

COMMENT ON COLUMN public.provider_budgets.provider_observed_at IS 'When a response last carried the provider''s x-ratelimit-* headers.';

COMMENT ON COLUMN public.provider_budgets.waits IS 'How many times a task was sent back to the queue to wait for this budget (a counter; /metrics).';

COMMENT ON COLUMN public.provider_budgets.rate_limited IS 'How many calls under this budget the provider still answered with 429 (a counter; /metrics).';

COMMENT ON COLUMN public.provider_budgets.updated_at IS 'When an operator last changed the limits.';

CREATE FUNCTION public.provider_budget_factor(b public.provider_budgets, at timestamp with time zone) RETURNS double precision
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT CASE WHEN b.shrunk_at IS NULL OR b.shrink_factor >= 1 THEN 1::float8
                ELSE least(1::float8, b.shrink_factor + (1 - b.shrink_factor)
                           * extract(epoch FROM at - b.shrunk_at)::float8 / b.window_seconds) END
$$;

COMMENT ON FUNCTION public.provider_budget_factor(b public.provider_budgets, at timestamp with time zone) IS 'The share of a budget''s configured limits in effect at a time: shrink_factor after a 429, back to 1 linearly over window_seconds.';

CREATE FUNCTION public.provider_budgets_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE background_tasks t SET run_at = now(), description = 'The provider''s budget changed: runs again now'
    FROM provider_budget_waits w
    WHERE w.provider = OLD.provider AND w.model = OLD.model AND t.id = w.task_id AND t.status = 'pending'
      AND t.run_at > now();
    DELETE FROM provider_budget_waits w WHERE w.provider = OLD.provider AND w.model = OLD.model;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    NEW.updated_at := now();
    NEW.shrink_factor := 1;  -- new numbers start whole; the provider's next signals shrink them again
    NEW.shrunk_at := NULL;
    RETURN NEW;
END
$$;

CREATE FUNCTION public.publish_task_types(worker text, types jsonb) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO task_types AS t (name, description, payload_schema, result_schema, max_retries, time_limit_s,
                                 needs_project, diagnostic, handler, published_by, published_at)
    SELECT e->>'name', coalesce(e->>'description', ''), coalesce(e->'payload_schema', '{"type": "object"}'),
           nullif(e->'result_schema', 'null'::jsonb), coalesce((e->>'max_retries')::integer, 3),
           coalesce((e->>'time_limit_s')::double precision, 900), coalesce((e->>'needs_project')::boolean, false),
           coalesce((e->>'diagnostic')::boolean, false), coalesce(e->>'handler', ''), worker, now()
    FROM jsonb_array_elements(types) AS e
    ON CONFLICT (name) DO UPDATE
        SET description = excluded.description, payload_schema = excluded.payload_schema,
            result_schema = excluded.result_schema, max_retries = excluded.max_retries,
            time_limit_s = excluded.time_limit_s, needs_project = excluded.needs_project,
            diagnostic = excluded.diagnostic, handler = excluded.handler, published_by = excluded.published_by,
            published_at = excluded.published_at;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM task_type_workers w WHERE w.worker_id = publish_task_types.worker;
    INSERT INTO task_type_workers (task_type, worker_id)
    SELECT e->>'name', publish_task_types.worker FROM jsonb_array_elements(types) AS e
    ON CONFLICT DO NOTHING;
    RETURN n;
END
$$;

COMMENT ON FUNCTION public.publish_task_types(worker text, types jsonb) IS 'A worker (already in bgtasks_workers) publishes the types it serves: [{"name", "description", "payload_schema", "result_schema", "max_retries", "time_limit_s", "needs_project", "diagnostic", "handler"}, …]; returns how many.';

CREATE FUNCTION public.purge_finished_tasks(older_than interval, batch_size integer DEFAULT 1000) RETURNS integer
    LANGUAGE sql
    AS $$
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

COMMENT ON FUNCTION public.purge_finished_tasks(older_than interval, batch_size integer) IS 'Retention step: delete at most batch_size finished (completed, error, cancelled) tasks that finished more than older_than ago, oldest first; returns how many. Call it again until it returns less than batch_size (the workers do, every minute, on BGTASKS_RETENTION_DAYS). Model usage (task_model_calls) is kept.';

CREATE FUNCTION public.reap_expired_leases(max_tasks integer DEFAULT 100, grace_seconds double precision DEFAULT 30) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    t record;
    n integer := 0;
BEGIN
    -- Within grace_seconds of the server's start or of the end of an outage, live workers may not have
    -- renewed yet: their leases ran out only because the database could not be reached. Take nothing back.
    IF now() < (SELECT greatest(reachable_since, pg_postmaster_start_time()) FROM lease_reaper WHERE id = 1)
               + make_interval(secs => grace_seconds) THEN
        RETURN 0;
    END IF;
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

COMMENT ON FUNCTION public.reap_expired_leases(max_tasks integer, grace_seconds double precision) IS 'Take back tasks whose worker died: retried (counted) or failed past max_retries; nothing within grace_seconds of a server start or an outage (lease_reaper). Any worker runs it; safe to call at psql.';

CREATE FUNCTION public.record_attempt_traceback(task_id text, claimed_attempt integer, tb text) RETURNS boolean
    LANGUAGE sql
    AS $$
    WITH latest AS (
        SELECT e.id FROM task_attempt_errors e
        WHERE e.task_id = record_attempt_traceback.task_id AND e.attempt = claimed_attempt
        ORDER BY e.id DESC LIMIT 1
    )
    UPDATE task_attempt_errors e SET traceback = left(tb, 16384) FROM latest WHERE e.id = latest.id
    RETURNING true
$$;

COMMENT ON FUNCTION public.record_attempt_traceback(task_id text, claimed_attempt integer, tb text) IS 'Worker: keep the traceback of the attempt fail_task() (or postpone_rate_limited()) just recorded.';

CREATE FUNCTION public.release_task(task_id text, claimed_attempt integer) RETURNS boolean
    LANGUAGE sql
    AS $$
    WITH released AS (
        UPDATE background_tasks SET status = 'pending', run_at = now(), worker_id = NULL
        WHERE id = task_id AND attempt = claimed_attempt AND status = 'processing'
        RETURNING 1)
    SELECT EXISTS (SELECT FROM released)
$$;

COMMENT ON FUNCTION public.release_task(task_id text, claimed_attempt integer) IS 'Worker shutdown: hand an unfinished task back to pending at once, without counting a retry.';

CREATE FUNCTION public.reserve_provider_budget(call_provider text, call_model text, calling_task text, estimate integer, hold_seconds double precision) RETURNS TABLE(reservation_id bigint, wait_seconds double precision, budget_provider text, budget_model text, limited_by text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    b provider_budgets;
    at timestamptz := clock_timestamp();
    factor double precision;
    lim bigint;
    n bigint;
    used bigint;
    want bigint;
    ahead bigint;
    turn bigint;
    slot timestamptz;
    wait double precision := 0;
    why text;
    made bigint;
BEGIN
    -- The budget row's lock makes reservations of one budget take turns: each counts what the one before
    -- committed (every statement of a plpgsql function reads a fresh snapshot).
    SELECT * INTO b FROM provider_budgets p
    WHERE p.provider = call_provider AND p.model IN (call_model, '*')
    ORDER BY p.model = '*' LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, 0::float8, NULL::text, NULL::text, NULL::text;
        RETURN;
    END IF;
    at := clock_timestamp();
    DELETE FROM provider_budget_reservations r
    WHERE r.provider = b.provider AND r.model = b.model AND r.counts_until <= at;
    factor := provider_budget_factor(b, at);
    -- Tasks already waiting for this budget are ahead of this one: it is given the free slot after theirs.
    SELECT count(*) INTO ahead FROM provider_budget_waits w JOIN background_tasks t ON t.id = w.task_id
    WHERE w.provider = b.provider AND w.model = b.model AND w.task_id IS DISTINCT FROM calling_task
      AND w.until > at AND t.status = 'pending';

    IF b.blocked_until > at THEN
        wait := extract(epoch FROM b.blocked_until - at);
        why := 'the provider asked to wait (a 429''s Retry-After)';
    END IF;

    IF b.requests_per_minute IS NOT NULL THEN
        lim := greatest(1, floor(b.requests_per_minute * factor));
        SELECT count(*) INTO n FROM provider_budget_reservations r
        WHERE r.provider = b.provider AND r.model = b.model;
        IF n >= lim THEN
            turn := n - lim + ahead;  -- this task's slot frees when that many calls (0-based) stopped counting
            SELECT e INTO slot FROM (
                SELECT provider_budget_expected_end(r, b.window_seconds, at) AS e, r.id
                FROM provider_budget_reservations r WHERE r.provider = b.provider AND r.model = b.model) x
            ORDER BY e, id OFFSET turn % n LIMIT 1;
            slot := slot + make_interval(secs => b.window_seconds * (turn / n));
            IF extract(epoch FROM slot - at) > wait THEN
                wait := extract(epoch FROM slot - at);
                why := format('%s requests per %s s in effect', lim, b.window_seconds);
            END IF;
        END IF;
    END IF;

    IF b.provider_requests_left IS NOT NULL AND b.provider_requests_reset_at > at THEN
        -- Calls the provider had not seen when it said how many were left count against that number.
        SELECT count(*) INTO n FROM provider_budget_reservations r
        WHERE r.provider = b.provider AND r.model = b.model
          AND (r.settled_at IS NULL OR r.settled_at > b.provider_observed_at);
        IF n >= b.provider_requests_left AND extract(epoch FROM b.provider_requests_reset_at - at) > wait THEN
            wait := extract(epoch FROM b.provider_requests_reset_at - at);
            why := format('the provider said %s requests were left (x-ratelimit-remaining-requests)',
                          b.provider_requests_left);
        END IF;
    END IF;

    IF b.tokens_per_minute IS NOT NULL THEN
        lim := greatest(1, floor(b.tokens_per_minute * factor));
        want := least(greatest(estimate, 0), lim);  -- a call larger than the budget waits for an empty window
        SELECT coalesce(sum(r.tokens), 0) INTO used FROM provider_budget_reservations r
        WHERE r.provider = b.provider AND r.model = b.model;
        IF used + want > lim THEN
            SELECT min(e) INTO slot FROM (
                SELECT e, sum(tokens) OVER (ORDER BY e, id) AS freed FROM (
                    SELECT provider_budget_expected_end(r, b.window_seconds, at) AS e, r.tokens, r.id
                    FROM provider_budget_reservations r WHERE r.provider = b.provider AND r.model = b.model) y) x
            WHERE used - freed + want <= lim;
            IF extract(epoch FROM slot - at) > wait THEN
                wait := extract(epoch FROM slot - at);
                why := format('%s tokens per %s s in effect, %s counted, %s asked', lim, b.window_seconds, used, want);
            END IF;
        END IF;
    END IF;

    IF b.provider_tokens_left IS NOT NULL AND b.provider_tokens_reset_at > at THEN
        SELECT coalesce(sum(r.tokens), 0) INTO used FROM provider_budget_reservations r
        WHERE r.provider = b.provider AND r.model = b.model
          AND (r.settled_at IS NULL OR r.settled_at > b.provider_observed_at);
        IF used + greatest(estimate, 0) > b.provider_tokens_left
           AND extract(epoch FROM b.provider_tokens_reset_at - at) > wait THEN
            wait := extract(epoch FROM b.provider_tokens_reset_at - at);
            why := format('the provider said %s tokens were left (x-ratelimit-remaining-tokens)', b.provider_tokens_left);
        END IF;
    END IF;

    IF wait > 0 THEN
        UPDATE provider_budgets p SET waits = p.waits + 1 WHERE p.provider = b.provider AND p.model = b.model;
        RETURN QUERY SELECT NULL::bigint, wait, b.provider, b.model, why;
        RETURN;
    END IF;
    DELETE FROM provider_budget_waits w WHERE w.task_id = calling_task;
    INSERT INTO provider_budget_reservations (provider, model, task_id, tokens, reserved_at, counts_until)
    VALUES (b.provider, b.model, calling_task, greatest(estimate, 0), at,
            at + make_interval(secs => b.window_seconds + greatest(hold_seconds, 0)))
    RETURNING id INTO made;
    RETURN QUERY SELECT made, 0::float8, b.provider, b.model, NULL::text;
END
$$;

COMMENT ON FUNCTION public.reserve_provider_budget(call_provider text, call_model text, calling_task text, estimate integer, hold_seconds double precision) IS 'Worker, before a model call to a provider (base URL) and model: count one request and `estimate` tokens against the budget that applies (provider_budgets: the model''s row, else ''*''). Room: a reservation id (settle it with settle_provider_budget()), wait 0. No room: no id, the seconds until this task''s turn and what is full. No budget: no id, wait 0. hold_seconds: the call''s longest possible duration (a dead worker''s reservation counts until then plus a window).';

CREATE FUNCTION public.resume_queue() RETURNS public.task_queue_settings
    LANGUAGE sql
    AS $$
    UPDATE task_queue_settings SET is_active = true WHERE id = 1 RETURNING *
$$;

COMMENT ON FUNCTION public.resume_queue() IS 'Start the queue (seed one''s start): workers wake on the NOTIFY and claim at once.';

CREATE FUNCTION public.retry_task(task_id text) RETURNS public.background_tasks
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.retry_task(task_id text) IS 'Send an error or cancelled task round again (retry_count reset).';

CREATE FUNCTION public.set_concurrency_limit(n integer) RETURNS public.task_queue_settings
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION public.set_concurrency_limit(n integer) IS 'Most tasks processing at once over every worker (NULL: no limit; 0 holds everything). Enforced at the next claim; running tasks are never stopped by a lower limit.';

CREATE FUNCTION public.settle_provider_budget(reservation bigint, used_tokens integer, was_rate_limited boolean, retry_after_seconds double precision, requests_left integer, requests_reset_seconds double precision, tokens_left bigint, tokens_reset_seconds double precision, observed_seconds_ago double precision) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    r provider_budget_reservations;
    b provider_budgets;
    at timestamptz;
    seen timestamptz;
BEGIN
    SELECT * INTO r FROM provider_budget_reservations x WHERE x.id = reservation;
    IF NOT FOUND THEN
        RETURN false;  -- its budget was deleted meanwhile
    END IF;
    -- Locks in the order reserve_provider_budget() takes them: the budget row, then its reservations.
    SELECT * INTO b FROM provider_budgets p WHERE p.provider = r.provider AND p.model = r.model FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    at := clock_timestamp();
    -- Counted from now, not from its start: the provider saw the call before it ended.
    UPDATE provider_budget_reservations x SET tokens = coalesce(greatest(used_tokens, 0), x.tokens), settled_at = at,
        counts_until = at + make_interval(secs => b.window_seconds)
    WHERE x.id = reservation;
    IF was_rate_limited THEN
        UPDATE provider_budgets p SET
            rate_limited = p.rate_limited + 1,
            -- One halving per tenth of a window: a burst of 429s to calls in flight together is one signal.
            shrink_factor = CASE WHEN p.shrunk_at > at - make_interval(secs => p.window_seconds / 10) THEN p.shrink_factor
                                 ELSE greatest(0.1, provider_budget_factor(b, at) / 2) END,
            shrunk_at = CASE WHEN p.shrunk_at > at - make_interval(secs => p.window_seconds / 10) THEN p.shrunk_at
                             ELSE at END,
            blocked_until = greatest(p.blocked_until, at + make_interval(secs => coalesce(retry_after_seconds,
                                     requests_reset_seconds, p.window_seconds / coalesce(p.requests_per_minute, 1))))
        WHERE p.provider = b.provider AND p.model = b.model;
    END IF;
    seen := at - make_interval(secs => greatest(coalesce(observed_seconds_ago, 0), 0));
    IF (requests_left IS NOT NULL OR tokens_left IS NOT NULL)
       AND seen > coalesce(b.provider_observed_at, '-infinity') THEN
        UPDATE provider_budgets p SET
            provider_observed_at = seen,
            provider_requests_left = requests_left,
            provider_requests_reset_at = seen + make_interval(secs => coalesce(requests_reset_seconds, 0)),
            provider_tokens_left = tokens_left,
            provider_tokens_reset_at = seen + make_interval(secs => coalesce(tokens_reset_seconds, 0))
        WHERE p.provider = b.provider AND p.model = b.model;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION public.settle_provider_budget(reservation bigint, used_tokens integer, was_rate_limited boolean, retry_after_seconds double precision, requests_left integer, requests_reset_seconds double precision, tokens_left bigint, tokens_reset_seconds double precision, observed_seconds_ago double precision) IS 'Worker, after a model call: its reservation counts its actual tokens until a window from now; a 429 shrinks the budget (shrink_factor) and blocks it for Retry-After; x-ratelimit-remaining-*/reset-* headers (seen observed_seconds_ago) are kept as the provider''s own count.';

CREATE FUNCTION public.task_analytics(since timestamp with time zone, until timestamp with time zone, group_by text DEFAULT 'type'::text, only_user text DEFAULT NULL::text) RETURNS TABLE(key text, total bigint, pending bigint, processing bigint, completed bigint, failed bigint, cancelled bigint, success_rate double precision, duration_p50_s double precision, duration_p95_s double precision, queue_wait_p50_s double precision, queue_wait_p95_s double precision, retries bigint, prompt_tokens bigint, completion_tokens bigint)
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF group_by NOT IN ('user', 'type') THEN
        RAISE EXCEPTION 'groupBy: must be user or type, not %', group_by USING ERRCODE = 'BG422', HINT = 'groupBy';
    END IF;
    RETURN QUERY
    WITH t AS (
        SELECT CASE WHEN group_by = 'user' THEN b.user_id ELSE b.task_type END AS k, b.*
        FROM background_tasks b
        WHERE b.created_at >= since AND b.created_at < until AND (only_user IS NULL OR b.user_id = only_user)
    ), tasks AS (
        SELECT t.k, count(*) AS total,
               count(*) FILTER (WHERE t.status = 'pending') AS pending,
               count(*) FILTER (WHERE t.status = 'processing') AS processing,
               count(*) FILTER (WHERE t.status = 'completed') AS completed,
               count(*) FILTER (WHERE t.status = 'error') AS failed,
               count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.completed_at - t.started_at))
                   FILTER (WHERE t.status = 'completed') AS d50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.completed_at - t.started_at))
                   FILTER (WHERE t.status = 'completed') AS d95,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.started_at - t.created_at))
                   FILTER (WHERE t.started_at IS NOT NULL) AS w50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.started_at - t.created_at))
                   FILTER (WHERE t.started_at IS NOT NULL) AS w95,
               sum(t.retry_count) AS retries
        FROM t GROUP BY t.k
    ), usage AS (  -- from task_model_calls: kept when retention deletes the task
        SELECT CASE WHEN group_by = 'user' THEN m.user_id ELSE m.task_type END AS k,
               sum(m.prompt_tokens) AS p, sum(m.completion_tokens) AS c
        FROM task_model_calls m
        WHERE m.created_at >= since AND m.created_at < until AND (only_user IS NULL OR m.user_id = only_user)
        GROUP BY 1
    )
    SELECT coalesce(tasks.k, usage.k), coalesce(tasks.total, 0), coalesce(tasks.pending, 0),
           coalesce(tasks.processing, 0), coalesce(tasks.completed, 0), coalesce(tasks.failed, 0),
           coalesce(tasks.cancelled, 0),
           tasks.completed::double precision / nullif(tasks.completed + tasks.failed, 0),
           tasks.d50, tasks.d95, tasks.w50, tasks.w95, coalesce(tasks.retries, 0)::bigint,
           coalesce(usage.p, 0)::bigint, coalesce(usage.c, 0)::bigint
    FROM tasks FULL JOIN usage ON usage.k = tasks.k
    ORDER BY 1;
END
$$;

COMMENT ON FUNCTION public.task_analytics(since timestamp with time zone, until timestamp with time zone, group_by text, only_user text) IS 'Per user or per type (group_by), over tasks created in [since, until) (of only_user when given): counts by status, success rate = completed / (completed + error), p50/p95 run time (completed) and queue wait (started - created, in seconds), retries, and model tokens of the calls made in the period.';

CREATE FUNCTION public.task_downstream(roots text[]) RETURNS TABLE(task_id text, via text, root text)
    LANGUAGE sql STABLE
    AS $$
    WITH RECURSIVE down(task_id, via, root) AS (
        SELECT d.task_id, d.depends_on, d.depends_on
        FROM task_dependencies d JOIN background_tasks t ON t.id = d.task_id
        WHERE d.depends_on = ANY (roots) AND t.status IN ('pending', 'processing')
        UNION
        SELECT d.task_id, d.depends_on, down.root
        FROM down JOIN task_dependencies d ON d.depends_on = down.task_id
        JOIN background_tasks t ON t.id = d.task_id
        WHERE t.status IN ('pending', 'processing')
    )
    SELECT DISTINCT ON (task_id) task_id, via, root FROM down ORDER BY task_id, (via = root) DESC, via
$$;

COMMENT ON FUNCTION public.task_downstream(roots text[]) IS 'Unfinished tasks that depend, directly or not, on any of roots: (task_id, the upstream task it waits on, the root).';

CREATE FUNCTION public.task_finish_stats_add(finished public.background_tasks[]) RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO task_finish_stats AS s (slot, bin_start, task_type, status, metric, bucket, shard, n, total_s)
    SELECT (extract(epoch FROM f.bin)::bigint / 10 % 64)::smallint, f.bin, f.task_type, f.status, m.metric,
           (SELECT count(*) FROM unnest(task_metrics_bucket_bounds()) b WHERE b < m.v)::smallint,
           pg_backend_pid() % 8, count(*), sum(m.v)
    FROM (SELECT t.*, date_bin('10 seconds', t.completed_at, 'epoch') AS bin FROM unnest(finished) t) f
    CROSS JOIN LATERAL (VALUES
        ('run', greatest(extract(epoch FROM f.completed_at - f.started_at), 0)::double precision),
        ('claim', greatest(extract(epoch FROM f.started_at - f.run_at), 0)::double precision),
        ('pickup', greatest(extract(epoch FROM f.started_at - f.created_at), 0)::double precision)) AS m(metric, v)
    WHERE f.status IN ('completed', 'error', 'cancelled') AND f.started_at IS NOT NULL
      AND f.completed_at > now() - interval '630 seconds'  -- older than the ring: in no window
    GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 3, 4, 5, 6
    ON CONFLICT (slot, task_type, status, metric, bucket, shard) DO UPDATE SET
        n = CASE WHEN s.bin_start = excluded.bin_start THEN s.n + excluded.n ELSE excluded.n END,
        total_s = CASE WHEN s.bin_start = excluded.bin_start THEN s.total_s + excluded.total_s
                       ELSE excluded.total_s END,
        bin_start = excluded.bin_start
    WHERE s.bin_start <= excluded.bin_start  -- a late writer never resets a newer bin
$$;

COMMENT ON FUNCTION public.task_finish_stats_add(finished public.background_tasks[]) IS 'Adds finished tasks (as they are now) to task_finish_stats; the statement triggers of background_tasks call it.';

CREATE FUNCTION public.task_metrics_bucket_bounds() RETURNS double precision[]
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT ARRAY[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]::double precision[]
$$;

COMMENT ON FUNCTION public.task_metrics_bucket_bounds() IS 'Upper bounds (seconds, ascending) of the histogram buckets of task_finish_stats and GET /metrics; bucket i counts values at most bound i (past the last: +Inf).';

CREATE FUNCTION public.task_output_cleanup() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- Cheap when no task streams (the common case): one probe of an empty index.
    IF EXISTS (SELECT 1 FROM task_output) THEN
        DELETE FROM task_output o USING new_rows n WHERE o.task_id = n.id AND n.status <> 'processing';
    END IF;
    RETURN NULL;
END $$;

COMMENT ON FUNCTION public.task_output_cleanup() IS 'Removes the partial output of tasks that left processing (finished, failed, cancelled, handed back).';

CREATE FUNCTION public.task_queue_settings_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated_at := now();
    PERFORM pg_notify('bgtasks_queue', jsonb_build_object(
        'is_active', NEW.is_active, 'poll_interval', NEW.poll_interval,
        'max_concurrent_tasks', NEW.max_concurrent_tasks)::text);
    RETURN NEW;
END
$$;

CREATE FUNCTION public.task_result_preview(result jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    AS $$
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

COMMENT ON FUNCTION public.task_result_preview(result jsonb) IS 'What a task list shows instead of a large result: {"truncated": true, "keys": [...], "counts": {array key: length}, "summary": first 500 characters, "success"}.';

CREATE FUNCTION public.task_retry_delay(retries_so_far integer) RETURNS interval
    LANGUAGE sql
    AS $$
    SELECT make_interval(secs => least(s.retry_max_delay_ms,
                                       s.retry_base_delay_ms * power(2, least(retries_so_far, 30)))
                                 * (0.5 + random() * 0.5) / 1000.0)
    FROM task_queue_settings s WHERE s.id = 1
$$;

COMMENT ON FUNCTION public.task_retry_delay(retries_so_far integer) IS 'Exponential backoff with jitter: base * 2^retries, capped, times a random 0.5-1.0 (settings in task_queue_settings).';

CREATE FUNCTION public.task_schedules_before_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.next_run_at := NULL;
        NEW.last_error := NULL;
    ELSIF (NEW.cron, NEW.timezone) IS DISTINCT FROM (OLD.cron, OLD.timezone)
          OR (NEW.enabled AND NOT OLD.enabled) THEN
        NEW.next_run_at := NULL;
        NEW.last_error := NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION public.task_transition_allowed(from_status public.task_status, to_status public.task_status) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT from_status = to_status OR (from_status, to_status) IN (
        ('pending', 'processing'), ('pending', 'completed'), ('pending', 'error'), ('pending', 'cancelled'),
        ('processing', 'pending'), ('processing', 'completed'), ('processing', 'error'),
        ('processing', 'cancelled'),
        ('error', 'pending'), ('cancelled', 'pending'))
$$;

COMMENT ON FUNCTION public.task_transition_allowed(from_status public.task_status, to_status public.task_status) IS 'The legal status moves. completed is final; error and cancelled go back to pending only by a retry.';

CREATE FUNCTION public.task_upstream_results(dependent text) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce(jsonb_object_agg(b.id, b.result_data ORDER BY b.completed_at, b.id), '{}'::jsonb)
    FROM task_dependencies d JOIN background_tasks b ON b.id = d.depends_on
    WHERE d.task_id = dependent AND b.status = 'completed'
$$;

COMMENT ON FUNCTION public.task_upstream_results(dependent text) IS 'The results of the completed tasks a task depends on: {"upstream id": result_data, ...} (chains pass results on).';

CREATE FUNCTION public.task_waiting_reason(t public.background_tasks) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    settings task_queue_settings;
    ids jsonb;
    last_outcome text;
    lim integer;
    running integer;
    wait double precision;
    budget_provider text;
    budget_model text;
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
        IF last_outcome = 'budget_wait' THEN
            SELECT w.provider, w.model INTO budget_provider, budget_model FROM provider_budget_waits w
            WHERE w.task_id = t.id;
            RETURN jsonb_build_object('reason', 'provider_budget', 'runAt', t.run_at, 'provider', budget_provider,
                'model', budget_model,
                'text', format('waiting for the provider''s budget (provider_budgets %s, model %s): runs again in %s',
                               budget_provider, budget_model, waiting_duration_text(wait)));
        ELSIF last_outcome = 'rate_limited' THEN
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

COMMENT ON FUNCTION public.task_waiting_reason(t public.background_tasks) IS 'Why a pending task is not running yet, as {"reason", "text", ...}: queue_stopped, dependencies (count, taskIds), scheduled (runAt), retry_backoff (retry, runAt), rate_limited (runAt), provider_budget (runAt, provider, model), no_worker (taskType), user_limit / type_limit / global_limit (running, limit), ready. NULL unless pending. SELECT task_waiting_reason(t) FROM background_tasks t WHERE id = ''…''.';

CREATE FUNCTION public.user_creation_limit(who text) RETURNS integer
    LANGUAGE sql STABLE
    AS $$
    SELECT max_created_per_minute FROM user_limits_for(who)
$$;

COMMENT ON FUNCTION public.user_creation_limit(who text) IS 'Tasks a user may create per 60 seconds (user_limits_for); NULL: no limit.';

CREATE FUNCTION public.user_limits_for(who text) RETURNS TABLE(max_running integer, max_created_per_minute integer, max_schedules integer, min_schedule_period_s integer, max_streams integer)
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce(own.max_running, star.max_running),
           coalesce(own.max_created_per_minute, star.max_created_per_minute),
           coalesce(own.max_schedules, star.max_schedules),
           coalesce(own.min_schedule_period_s, star.min_schedule_period_s),
           coalesce(own.max_streams, star.max_streams)
    FROM (SELECT 1) one
    LEFT JOIN user_limits own ON own.user_id = who AND who <> '*'
    LEFT JOIN user_limits star ON star.user_id = '*'
$$;

COMMENT ON FUNCTION public.user_limits_for(who text) IS 'The limits that apply to a user: each column from its own user_limits row, else from the * row; NULL: no limit (max_streams NULL: BGTASKS_MAX_STREAMS_PER_USER).';

CREATE FUNCTION public.user_running_limit(who text) RETURNS integer
    LANGUAGE sql STABLE
    AS $$
    SELECT max_running FROM user_limits_for(who)
$$;

COMMENT ON FUNCTION public.user_running_limit(who text) IS 'The running limit of a user (user_limits_for); NULL: none.';

CREATE FUNCTION public.user_spending_today(who text) RETURNS TABLE(cap_usd numeric, spent_usd numeric)
    LANGUAGE sql STABLE
    AS $$
    WITH cap AS (
        SELECT coalesce((SELECT max_cost_usd_per_day FROM user_limits WHERE user_id = who),
                        (SELECT max_cost_usd_per_day FROM user_limits WHERE user_id = '*')) AS usd)
    SELECT cap.usd,
           CASE WHEN cap.usd IS NULL THEN NULL ELSE
               (SELECT coalesce(sum(cost_usd), 0) FROM task_model_calls
                WHERE user_id = who AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
           END
    FROM cap
$$;

COMMENT ON FUNCTION public.user_spending_today(who text) IS 'A user''s daily spending cap (own user_limits row, else the * row; NULL: none) and what their model calls cost since 00:00 UTC (NULL without a cap).';

CREATE FUNCTION public.waiting_duration_text(seconds double precision) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT CASE
        WHEN s < 60 THEN format('%s s', s)
        WHEN s < 3600 THEN format('%s m %s s', s / 60, s % 60)
        WHEN s < 86400 THEN format('%s h %s m', s / 3600, (s % 3600) / 60)
        ELSE format('%s d %s h', s / 86400, (s % 86400) / 3600)
    END
    FROM (SELECT greatest(floor(seconds), 0)::bigint AS s) x
$$;

COMMENT ON FUNCTION public.waiting_duration_text(seconds double precision) IS 'A duration in words for people: 42 s, 3 m 5 s, 1 h 58 m, 2 d 4 h.';

CREATE FUNCTION public.worker_heartbeat(worker text, outage_seconds double precision DEFAULT 12) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- No live worker heartbeat for longer than outage_seconds: nobody could reach the database (or every
    -- worker was frozen). Leases that ran out meanwhile get a grace period before they are reaped.
    IF NOT EXISTS (SELECT FROM bgtasks_workers WHERE stopped_at IS NULL
                   AND heartbeat_at >= now() - make_interval(secs => outage_seconds)) THEN
        UPDATE lease_reaper SET reachable_since = now() WHERE id = 1;
    END IF;
    UPDATE bgtasks_workers SET heartbeat_at = now() WHERE worker_id = worker;
END
$$;

COMMENT ON FUNCTION public.worker_heartbeat(worker text, outage_seconds double precision) IS 'Worker: it is alive. The first heartbeat after none for outage_seconds (an outage) starts the reapers'' grace period (lease_reaper).';

CREATE FUNCTION public.worker_stale_after() RETURNS interval
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce(nullif(current_setting('bgtasks.worker_stale_after', true), '')::interval,
                    interval '90 seconds')
$$;

COMMENT ON FUNCTION public.worker_stale_after() IS 'How old a worker''s heartbeat may be for it to count as live: 90 s (three default 30 s leases) unless SET bgtasks.worker_stale_after.';

CREATE FUNCTION public.worker_task_types(worker text) RETURNS text[]
    LANGUAGE sql STABLE
    AS $$
    SELECT array_agg(s.task_type) FROM task_type_workers s WHERE s.worker_id = worker
$$;

COMMENT ON FUNCTION public.worker_task_types(worker text) IS 'The task types a worker published that it serves; NULL when it published none (then it claims any type).';

CREATE TABLE public.api_keys (
    id bigint NOT NULL,
    user_id text NOT NULL,
    key_prefix text NOT NULL,
    key_hash text NOT NULL,
    is_superuser boolean DEFAULT false NOT NULL,
    label text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_used_at timestamp with time zone,
    revoked_at timestamp with time zone,
    CONSTRAINT api_keys_user_id_check CHECK (((length(user_id) >= 1) AND (length(user_id) <= 200)))
);

COMMENT ON TABLE public.api_keys IS 'API keys (Authorization: Bearer KEY). Only a SHA-256 hash is stored; the key is shown once at creation.';

COMMENT ON COLUMN public.api_keys.id IS 'Key number.';

COMMENT ON COLUMN public.api_keys.user_id IS 'The user the key acts as.';

COMMENT ON COLUMN public.api_keys.key_prefix IS 'First characters of the key, to recognise it in lists.';

COMMENT ON COLUMN public.api_keys.key_hash IS 'hex SHA-256 of the key.';

COMMENT ON COLUMN public.api_keys.is_superuser IS 'Sees and manages every user''s tasks and the queue settings.';

COMMENT ON COLUMN public.api_keys.label IS 'Free text: what the key is for.';

COMMENT ON COLUMN public.api_keys.created_at IS 'When it was created.';

COMMENT ON COLUMN public.api_keys.last_used_at IS 'When it was last used (updated at most once a minute).';

COMMENT ON COLUMN public.api_keys.revoked_at IS 'When it was revoked; a revoked key is refused.';

ALTER TABLE public.api_keys ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.api_keys_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE SEQUENCE public.background_task_changes
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.background_task_changes OWNED BY public.background_tasks.change_seq;

COMMENT ON SEQUENCE public.background_task_changes IS 'Monotonic change numbers: every visible change of a task takes the next one; SSE event ids and Last-Event-ID resume use them.';

CREATE TABLE public.bgtasks_workers (
    worker_id text NOT NULL,
    hostname text NOT NULL,
    pid integer NOT NULL,
    concurrency integer NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    stopped_at timestamp with time zone,
    claim_short_at timestamp with time zone
);

COMMENT ON TABLE public.bgtasks_workers IS 'Worker processes, live and recently stopped; heartbeat_at moves while a worker lives.';

COMMENT ON COLUMN public.bgtasks_workers.worker_id IS 'host:pid:nonce, as in background_tasks.worker_id.';

COMMENT ON COLUMN public.bgtasks_workers.hostname IS 'Host it runs on.';

COMMENT ON COLUMN public.bgtasks_workers.pid IS 'Process id on that host.';

COMMENT ON COLUMN public.bgtasks_workers.concurrency IS 'Tasks it runs at once at most.';

COMMENT ON COLUMN public.bgtasks_workers.started_at IS 'When it started.';

COMMENT ON COLUMN public.bgtasks_workers.heartbeat_at IS 'Its latest heartbeat.';

COMMENT ON COLUMN public.bgtasks_workers.stopped_at IS 'When it stopped cleanly; NULL while running (or if it died).';

COMMENT ON COLUMN public.bgtasks_workers.claim_short_at IS 'Its latest claim under max_concurrent_tasks that got fewer tasks than it had room for (NULL: its latest claim got all it asked); while recent, the other workers claim only up to their share of the limit.';

CREATE VIEW public.claimable_tasks AS
 SELECT id,
    user_id,
    task_type,
    priority,
    run_at,
    (run_at <= now()) AS due
   FROM public.background_tasks t
  WHERE ((status = 'pending'::public.task_status) AND (waiting_for = 0));

COMMENT ON VIEW public.claimable_tasks IS 'The claim condition, written once: pending tasks waiting on no dependency; due: run_at has come (a claim takes only due ones). Every claim reads it: lock_tasks_to_claim(), so claim_tasks() and complete_and_claim(); also queue_health and the worker''s wake-up time. Served by the partial index background_tasks_claimable_idx (same predicate), each owner''s rows in claim order: priority, then run_at, then id.';

CREATE TABLE public.lease_reaper (
    id smallint DEFAULT 1 NOT NULL,
    reachable_since timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT lease_reaper_id_check CHECK ((id = 1))
);

COMMENT ON TABLE public.lease_reaper IS 'One row: since when workers have reached the database without a gap; reap_expired_leases() takes nothing back during a grace period after it (or after the server started).';

COMMENT ON COLUMN public.lease_reaper.id IS 'Always 1: the table has one row.';

COMMENT ON COLUMN public.lease_reaper.reachable_since IS 'The first worker heartbeat after a stretch without any (the database was down or unreachable); workers get a grace period from here to renew their leases.';

CREATE TABLE public.model_prices (
    model text NOT NULL,
    prompt_per_million numeric(12,6) NOT NULL,
    completion_per_million numeric(12,6) NOT NULL,
    cached_prompt_per_million numeric(12,6) NOT NULL,
    as_of date DEFAULT CURRENT_DATE NOT NULL,
    source text DEFAULT 'set by an operator'::text NOT NULL,
    CONSTRAINT model_prices_cached_prompt_per_million_check CHECK ((cached_prompt_per_million >= (0)::numeric)),
    CONSTRAINT model_prices_completion_per_million_check CHECK ((completion_per_million >= (0)::numeric)),
    CONSTRAINT model_prices_model_check CHECK (((length(model) >= 1) AND (length(model) <= 200))),
    CONSTRAINT model_prices_prompt_per_million_check CHECK ((prompt_per_million >= (0)::numeric))
);

COMMENT ON TABLE public.model_prices IS 'Price per million tokens of each model, in US dollars. A call''s model matches the longest row that is a prefix of it (gpt-4o-mini covers gpt-4o-mini-2024-07-18); an unmatched model''s calls have no cost (NULL). Change prices with INSERT/UPDATE; a new price applies to calls recorded after it.';

COMMENT ON COLUMN public.model_prices.model IS 'Model name, or the prefix of the names it prices.';

COMMENT ON COLUMN public.model_prices.prompt_per_million IS 'USD per million prompt tokens not served from the provider''s prompt cache.';

COMMENT ON COLUMN public.model_prices.completion_per_million IS 'USD per million completion (output) tokens.';

COMMENT ON COLUMN public.model_prices.cached_prompt_per_million IS 'USD per million prompt tokens served from the provider''s prompt cache.';

COMMENT ON COLUMN public.model_prices.as_of IS 'When this price was taken from the provider''s price list.';

COMMENT ON COLUMN public.model_prices.source IS 'Where the price comes from.';

CREATE VIEW public.pending_tasks_why AS
 SELECT t.id,
    t.user_id,
    t.task_type,
    t.priority,
    t.created_at,
    t.run_at,
    (w.why ->> 'reason'::text) AS reason,
    (w.why ->> 'text'::text) AS why,
    w.why AS details
   FROM (public.background_tasks t
     CROSS JOIN LATERAL ( SELECT public.task_waiting_reason(t.*) AS why) w)
  WHERE (t.status = 'pending'::public.task_status);

COMMENT ON VIEW public.pending_tasks_why IS 'Every pending task and why it waits (task_waiting_reason()): SELECT id, reason, why FROM pending_tasks_why WHERE user_id = ''…''; one function call per row, so filter first on a big queue.';

ALTER TABLE public.provider_budget_reservations ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.provider_budget_reservations_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.provider_budget_waits (
    task_id text NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL,
    until timestamp with time zone NOT NULL
);

COMMENT ON TABLE public.provider_budget_waits IS 'Tasks sent back to the queue to wait for a provider budget, and until when: a later waiter is given a later free slot (no herd on one), and a change of the budget wakes them (provider_budgets_changed).';

COMMENT ON COLUMN public.provider_budget_waits.task_id IS 'The waiting task.';

COMMENT ON COLUMN public.provider_budget_waits.provider IS 'The budget it waits for: provider (base URL) …';

COMMENT ON COLUMN public.provider_budget_waits.model IS '… and model (''*'': the provider''s shared row).';

COMMENT ON COLUMN public.provider_budget_waits.since IS 'When it first had to wait.';

COMMENT ON COLUMN public.provider_budget_waits.until IS 'When the task runs again (its run_at), the moment a slot of the budget is expected to be free for it.';

CREATE VIEW public.provider_budget_usage AS
 SELECT b.provider,
    b.model,
    b.requests_per_minute,
    b.tokens_per_minute,
    b.window_seconds,
    f.factor AS share_in_effect,
    (floor(((b.requests_per_minute)::double precision * f.factor)))::bigint AS requests_in_effect,
    (floor(((b.tokens_per_minute)::double precision * f.factor)))::bigint AS tokens_in_effect,
    COALESCE(r.requests, (0)::bigint) AS requests_counted,
    COALESCE(r.tokens, (0)::bigint) AS tokens_counted,
    COALESCE(w.tasks, (0)::bigint) AS tasks_waiting,
    b.waits,
    b.rate_limited,
    b.blocked_until,
    b.provider_requests_left,
    b.provider_tokens_left,
    b.provider_observed_at,
    b.updated_at
   FROM (((public.provider_budgets b
     CROSS JOIN LATERAL ( SELECT public.provider_budget_factor(b.*, clock_timestamp()) AS factor) f)
     LEFT JOIN LATERAL ( SELECT count(*) AS requests,
            sum(x.tokens) AS tokens
           FROM public.provider_budget_reservations x
          WHERE ((x.provider = b.provider) AND (x.model = b.model) AND (x.counts_until > clock_timestamp()))) r ON (true))
     LEFT JOIN LATERAL ( SELECT count(*) AS tasks
           FROM (public.provider_budget_waits x
             JOIN public.background_tasks t ON ((t.id = x.task_id)))
          WHERE ((x.provider = b.provider) AND (x.model = b.model) AND (t.status = 'pending'::public.task_status))) w ON (true));

COMMENT ON VIEW public.provider_budget_usage IS 'Each provider budget as it stands: the limits configured and in effect (after 429s), what is counted in the current window, how many tasks wait for it, and its counters (waits, rate_limited). SELECT * FROM provider_budget_usage;';

CREATE TABLE public.questions (
    id bigint NOT NULL,
    user_id text NOT NULL,
    task_id text,
    category text NOT NULL,
    age_group text NOT NULL,
    difficulty text NOT NULL,
    question text NOT NULL,
    options jsonb NOT NULL,
    correct_answer text NOT NULL,
    emoji text,
    explanation text,
    validation_verdict text,
    validation_reason text,
    validated_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT questions_options_check CHECK ((jsonb_typeof(options) = 'array'::text)),
    CONSTRAINT questions_validation_verdict_check CHECK ((validation_verdict = ANY (ARRAY['valid'::text, 'invalid'::text, 'uncertain'::text])))
);

COMMENT ON TABLE public.questions IS 'Quiz questions (seed two), written by generation tasks, checked by validation, re-emojied by emoji-regeneration.';

COMMENT ON COLUMN public.questions.id IS 'Question number.';

COMMENT ON COLUMN public.questions.user_id IS 'Owner (the user whose task created it).';

COMMENT ON COLUMN public.questions.task_id IS 'The generation task that created it.';

COMMENT ON COLUMN public.questions.category IS 'Category, e.g. Historia.';

COMMENT ON COLUMN public.questions.age_group IS 'children, youth or adults.';

COMMENT ON COLUMN public.questions.difficulty IS 'easy, medium or hard.';

COMMENT ON COLUMN public.questions.question IS 'The question text.';

COMMENT ON COLUMN public.questions.options IS 'Answer options (JSON array of strings).';

COMMENT ON COLUMN public.questions.correct_answer IS 'The correct option, as written in options.';

COMMENT ON COLUMN public.questions.emoji IS 'One emoji that illustrates the question.';

COMMENT ON COLUMN public.questions.explanation IS 'Why the answer is right.';

COMMENT ON COLUMN public.questions.validation_verdict IS 'Latest validation: valid, invalid or uncertain.';

COMMENT ON COLUMN public.questions.validation_reason IS 'The validator''s reason.';

COMMENT ON COLUMN public.questions.validated_at IS 'When it was last validated.';

COMMENT ON COLUMN public.questions.created_at IS 'When it was created.';

COMMENT ON COLUMN public.questions.updated_at IS 'When it last changed.';

ALTER TABLE public.questions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.questions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.task_counts (
    user_id text NOT NULL,
    task_type text NOT NULL,
    status public.task_status NOT NULL,
    shard smallint NOT NULL,
    n bigint NOT NULL
);

COMMENT ON TABLE public.task_counts IS 'Task counts kept by triggers (sum n over shards): SELECT status, sum(n) FROM task_counts GROUP BY 1. Never scan background_tasks to count.';

COMMENT ON COLUMN public.task_counts.user_id IS 'Owner.';

COMMENT ON COLUMN public.task_counts.task_type IS 'Task type.';

COMMENT ON COLUMN public.task_counts.status IS 'Status.';

COMMENT ON COLUMN public.task_counts.shard IS 'Spreads concurrent writers over rows; sum over it.';

COMMENT ON COLUMN public.task_counts.n IS 'Tasks in this group and shard (may be negative in one shard; the sum is exact).';

CREATE VIEW public.queue_health AS
 SELECT s.is_active,
    s.max_concurrent_tasks,
    s.poll_interval AS poll_interval_ms,
    ( SELECT count(*) AS count
           FROM public.background_tasks
          WHERE (background_tasks.status = 'processing'::public.task_status)) AS running,
    ( SELECT count(*) AS count
           FROM public.background_tasks
          WHERE ((background_tasks.status = 'processing'::public.task_status) AND (background_tasks.lease_expires_at < now()))) AS stuck,
    ( SELECT count(*) AS count
           FROM public.claimable_tasks
          WHERE claimable_tasks.due) AS pending_due,
    ( SELECT (COALESCE(sum(task_counts.n), (0)::numeric))::bigint AS "coalesce"
           FROM public.task_counts
          WHERE (task_counts.status = 'pending'::public.task_status)) AS pending_total,
    ( SELECT (now() - min(claimable_tasks.run_at))
           FROM public.claimable_tasks
          WHERE claimable_tasks.due) AS oldest_due_waiting,
    w.live AS live_workers,
    w.capacity AS live_capacity,
    w.silent AS silent_workers,
    s.last_poll_at,
    (now() - s.last_poll_at) AS since_last_poll
   FROM public.task_queue_settings s,
    LATERAL ( SELECT count(*) FILTER (WHERE (bgtasks_workers.heartbeat_at >= (now() - public.worker_stale_after()))) AS live,
            COALESCE(sum(bgtasks_workers.concurrency) FILTER (WHERE (bgtasks_workers.heartbeat_at >= (now() - public.worker_stale_after()))), (0)::bigint) AS capacity,
            count(*) FILTER (WHERE (bgtasks_workers.heartbeat_at < (now() - public.worker_stale_after()))) AS silent
           FROM public.bgtasks_workers
          WHERE (bgtasks_workers.stopped_at IS NULL)) w
  WHERE (s.id = 1);

COMMENT ON VIEW public.queue_health IS 'One row: is the queue running (is_active, limit), how busy (running, pending due now and how long the oldest has waited), stuck tasks (lease expired), live workers (heartbeat within worker_stale_after()) and their capacity, workers that went silent without stopping, and the last poll.';

CREATE TABLE public.service_secrets (
    name text NOT NULL,
    secret bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT service_secrets_secret_check CHECK ((length(secret) >= 32))
);

COMMENT ON TABLE public.service_secrets IS 'Secrets the API processes share, made on first use. read_tokens signs browser read tokens (subscribeToken) unless BGTASKS_TOKEN_SECRET is set; delete it and restart the API processes to invalidate every read token.';

COMMENT ON COLUMN public.service_secrets.name IS 'What the secret is for (read_tokens).';

COMMENT ON COLUMN public.service_secrets.secret IS '32 random bytes.';

COMMENT ON COLUMN public.service_secrets.created_at IS 'When it was made.';

CREATE VIEW public.stuck_tasks AS
 SELECT t.id,
    t.task_type,
    t.user_id,
    t.worker_id,
    t.attempt,
    t.retry_count,
    t.max_retries,
    t.started_at,
    t.lease_expires_at,
    (now() - t.lease_expires_at) AS overdue,
    w.heartbeat_at AS worker_heartbeat_at,
    ((w.stopped_at IS NULL) AND (w.heartbeat_at >= (now() - public.worker_stale_after()))) AS worker_alive
   FROM (public.background_tasks t
     LEFT JOIN public.bgtasks_workers w ON ((w.worker_id = t.worker_id)))
  WHERE ((t.status = 'processing'::public.task_status) AND (t.lease_expires_at < now()))
  ORDER BY t.lease_expires_at;

COMMENT ON VIEW public.stuck_tasks IS 'Processing tasks whose lease expired: their worker stopped heartbeating. Any live worker takes them back within BGTASKS_REAP_INTERVAL_S; if rows stay here, no worker is running (see queue_health.live_workers), or run SELECT reap_expired_leases();';

CREATE VIEW public.task_analytics_by_type AS
 SELECT key,
    total,
    pending,
    processing,
    completed,
    failed,
    cancelled,
    success_rate,
    duration_p50_s,
    duration_p95_s,
    queue_wait_p50_s,
    queue_wait_p95_s,
    retries,
    prompt_tokens,
    completion_tokens
   FROM public.task_analytics((now() - '24:00:00'::interval), (now() + '00:00:01'::interval), 'type'::text) task_analytics(key, total, pending, processing, completed, failed, cancelled, success_rate, duration_p50_s, duration_p95_s, queue_wait_p50_s, queue_wait_p95_s, retries, prompt_tokens, completion_tokens);

COMMENT ON VIEW public.task_analytics_by_type IS 'task_analytics over the last 24 hours, per task type.';

CREATE VIEW public.task_analytics_by_user AS
 SELECT key,
    total,
    pending,
    processing,
    completed,
    failed,
    cancelled,
    success_rate,
    duration_p50_s,
    duration_p95_s,
    queue_wait_p50_s,
    queue_wait_p95_s,
    retries,
    prompt_tokens,
    completion_tokens
   FROM public.task_analytics((now() - '24:00:00'::interval), (now() + '00:00:01'::interval), 'user'::text) task_analytics(key, total, pending, processing, completed, failed, cancelled, success_rate, duration_p50_s, duration_p95_s, queue_wait_p50_s, queue_wait_p95_s, retries, prompt_tokens, completion_tokens);

COMMENT ON VIEW public.task_analytics_by_user IS 'task_analytics over the last 24 hours, per user.';

CREATE TABLE public.task_attempt_errors (
    id bigint NOT NULL,
    task_id text NOT NULL,
    attempt integer NOT NULL,
    worker_id text,
    error_type text NOT NULL,
    error_message text NOT NULL,
    outcome text NOT NULL,
    started_at timestamp with time zone,
    failed_at timestamp with time zone DEFAULT now() NOT NULL,
    traceback text,
    CONSTRAINT task_attempt_errors_outcome_check CHECK ((outcome = ANY (ARRAY['retried'::text, 'failed'::text, 'lease_expired'::text, 'rate_limited'::text, 'budget_wait'::text]))),
    CONSTRAINT task_attempt_errors_traceback_check CHECK ((length(traceback) <= 16384))
);

COMMENT ON TABLE public.task_attempt_errors IS 'One row per attempt that did not complete: its error, when, on which worker, and what followed.';

COMMENT ON COLUMN public.task_attempt_errors.id IS 'Row number.';

COMMENT ON COLUMN public.task_attempt_errors.task_id IS 'The task.';

COMMENT ON COLUMN public.task_attempt_errors.attempt IS 'background_tasks.attempt of the failed attempt.';

COMMENT ON COLUMN public.task_attempt_errors.worker_id IS 'The worker that ran it.';

COMMENT ON COLUMN public.task_attempt_errors.error_type IS 'Exception class, or LeaseExpired when the worker died.';

COMMENT ON COLUMN public.task_attempt_errors.error_message IS 'The error in words.';

COMMENT ON COLUMN public.task_attempt_errors.outcome IS 'retried (back to pending after backoff), failed (task ended in error), lease_expired (worker lost; retried or failed), rate_limited (the provider said 429: back to pending without counting a retry), budget_wait (a provider budget had no room: back in the queue before any call, without counting a retry).';

COMMENT ON COLUMN public.task_attempt_errors.started_at IS 'When the attempt began.';

COMMENT ON COLUMN public.task_attempt_errors.failed_at IS 'When it failed.';

COMMENT ON COLUMN public.task_attempt_errors.traceback IS 'The Python traceback of the failed attempt (at most 16,384 characters: its start and its end); NULL when there was none (lease expired, cancelled).';

ALTER TABLE public.task_attempt_errors ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.task_attempt_errors_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.task_creation_counts (
    user_id text NOT NULL,
    second timestamp with time zone NOT NULL,
    shard smallint NOT NULL,
    n integer NOT NULL
);

COMMENT ON TABLE public.task_creation_counts IS 'Tasks created per user and second over the last minute, kept by the insert trigger of background_tasks (every writer, psql included); check_creation_rate() sums them. Older seconds are deleted as the user creates more.';

COMMENT ON COLUMN public.task_creation_counts.user_id IS 'Owner of the tasks created.';

COMMENT ON COLUMN public.task_creation_counts.second IS 'The second they were created in (created_at truncated to the second).';

COMMENT ON COLUMN public.task_creation_counts.shard IS 'Spreads concurrent inserting sessions over rows; sum over it.';

COMMENT ON COLUMN public.task_creation_counts.n IS 'Tasks created in this second (this shard).';

CREATE TABLE public.task_dependencies (
    task_id text NOT NULL,
    depends_on text NOT NULL,
    CONSTRAINT task_dependencies_check CHECK ((task_id <> depends_on))
);

COMMENT ON TABLE public.task_dependencies IS 'task_id waits until depends_on has completed (background_tasks.waiting_for counts the rest).';

COMMENT ON COLUMN public.task_dependencies.task_id IS 'The waiting task.';

COMMENT ON COLUMN public.task_dependencies.depends_on IS 'The task it waits for.';

CREATE TABLE public.task_finish_stats (
    slot smallint NOT NULL,
    bin_start timestamp with time zone NOT NULL,
    task_type text NOT NULL,
    status public.task_status NOT NULL,
    metric text NOT NULL,
    bucket smallint NOT NULL,
    shard smallint NOT NULL,
    n bigint NOT NULL,
    total_s double precision NOT NULL,
    CONSTRAINT task_finish_stats_metric_check CHECK ((metric = ANY (ARRAY['run'::text, 'claim'::text, 'pickup'::text])))
);

COMMENT ON TABLE public.task_finish_stats IS 'Histograms of the tasks that finished recently, kept by the update trigger of background_tasks: per 10-second bin, type, status, metric and bucket. A ring of 64 bins (about 10 minutes); GET /metrics sums the bins of its window: SELECT metric, bucket, sum(n) FROM task_finish_stats WHERE bin_start > now() - interval ''5 minutes'' GROUP BY 1, 2.';

COMMENT ON COLUMN public.task_finish_stats.slot IS 'Position in the ring (the bin number modulo 64); reused when its next bin begins.';

COMMENT ON COLUMN public.task_finish_stats.bin_start IS 'Start of the 10-second bin the tasks finished in.';

COMMENT ON COLUMN public.task_finish_stats.task_type IS 'Task type.';

COMMENT ON COLUMN public.task_finish_stats.status IS 'How they finished: completed, error or cancelled.';

COMMENT ON COLUMN public.task_finish_stats.metric IS 'run: claimed to finished; claim: due (run_at) to claimed; pickup: created to claimed (seconds, last attempt).';

COMMENT ON COLUMN public.task_finish_stats.bucket IS 'Histogram bucket: how many of task_metrics_bucket_bounds() are below the value.';

COMMENT ON COLUMN public.task_finish_stats.shard IS 'Spreads concurrent finishing sessions over rows; sum over it.';

COMMENT ON COLUMN public.task_finish_stats.n IS 'Tasks in this bin, group and bucket (this shard).';

COMMENT ON COLUMN public.task_finish_stats.total_s IS 'Sum of their values, seconds (this shard).';

CREATE TABLE public.task_model_calls (
    id bigint NOT NULL,
    task_id text NOT NULL,
    user_id text NOT NULL,
    task_type text NOT NULL,
    attempt integer NOT NULL,
    model text NOT NULL,
    prompt_tokens integer DEFAULT 0 NOT NULL,
    completion_tokens integer DEFAULT 0 NOT NULL,
    total_tokens integer DEFAULT 0 NOT NULL,
    duration_ms integer NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    cached_prompt_tokens integer DEFAULT 0 NOT NULL,
    cost_usd numeric(18,10)
);

COMMENT ON TABLE public.task_model_calls IS 'Every model call: tokens and duration. Kept when retention deletes the task, for usage reports.';

COMMENT ON COLUMN public.task_model_calls.id IS 'Row number.';

COMMENT ON COLUMN public.task_model_calls.task_id IS 'The task that made the call (no foreign key: usage outlives the task).';

COMMENT ON COLUMN public.task_model_calls.user_id IS 'The task''s owner.';

COMMENT ON COLUMN public.task_model_calls.task_type IS 'The task''s type.';

COMMENT ON COLUMN public.task_model_calls.attempt IS 'The task''s attempt that made the call.';

COMMENT ON COLUMN public.task_model_calls.model IS 'Model name as sent to the API.';

COMMENT ON COLUMN public.task_model_calls.prompt_tokens IS 'Prompt tokens the API reported.';

COMMENT ON COLUMN public.task_model_calls.completion_tokens IS 'Completion tokens the API reported.';

COMMENT ON COLUMN public.task_model_calls.total_tokens IS 'Total tokens the API reported.';

COMMENT ON COLUMN public.task_model_calls.duration_ms IS 'Wall time of the call.';

COMMENT ON COLUMN public.task_model_calls.created_at IS 'When the call ended.';

COMMENT ON COLUMN public.task_model_calls.cached_prompt_tokens IS 'Of the prompt tokens, those the provider served from its prompt cache.';

COMMENT ON COLUMN public.task_model_calls.cost_usd IS 'What the call cost in US dollars at the model_prices row in force when it was recorded; NULL: the model has no price.';

ALTER TABLE public.task_model_calls ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.task_model_calls_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.task_output (
    task_id text NOT NULL,
    seq bigint DEFAULT nextval('public.background_task_changes'::regclass) NOT NULL,
    attempt integer NOT NULL,
    chunk text NOT NULL,
    written_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE public.task_output IS 'Partial output of running tasks (a streaming model call''s text so far), one row per coalesced write (about ten a second at most). Bounded per task by append_task_output(); removed when the task leaves processing: the result is the durable record.';

COMMENT ON COLUMN public.task_output.task_id IS 'The task whose output this is.';

COMMENT ON COLUMN public.task_output.seq IS 'Change number (from background_task_changes, like background_tasks.change_seq): the SSE event id of the output event.';

COMMENT ON COLUMN public.task_output.attempt IS 'The attempt that wrote it; a new attempt''s first write removes an older attempt''s output.';

COMMENT ON COLUMN public.task_output.chunk IS 'The text produced since the previous chunk.';

COMMENT ON COLUMN public.task_output.written_at IS 'When the chunk was written.';

CREATE TABLE public.task_schedules (
    name text NOT NULL,
    task_type text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    user_id text NOT NULL,
    cron text NOT NULL,
    timezone text DEFAULT 'UTC'::text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    catch_up text DEFAULT 'skip'::text NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    max_retries integer DEFAULT 3 NOT NULL,
    label text,
    next_run_at timestamp with time zone,
    last_run_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    last_error text,
    CONSTRAINT task_schedules_catch_up_check CHECK ((catch_up = ANY (ARRAY['skip'::text, 'once'::text]))),
    CONSTRAINT task_schedules_max_retries_check CHECK (((max_retries >= 0) AND (max_retries <= 100))),
    CONSTRAINT task_schedules_name_check CHECK ((name ~ '^[A-Za-z0-9_.:-]{1,100}$'::text)),
    CONSTRAINT task_schedules_payload_check CHECK ((jsonb_typeof(payload) = 'object'::text)),
    CONSTRAINT task_schedules_task_type_check CHECK ((task_type ~ '^[a-z][a-z0-9_-]{0,39}$'::text))
);

COMMENT ON TABLE public.task_schedules IS 'Named cron schedules that create tasks on time; exactly one task per due time (unique index on background_tasks).';

COMMENT ON COLUMN public.task_schedules.name IS 'Schedule name, unique per owner (user_id): two users may each have "nightly".';

COMMENT ON COLUMN public.task_schedules.task_type IS 'Type of the tasks it creates.';

COMMENT ON COLUMN public.task_schedules.payload IS 'Payload of the tasks it creates.';

COMMENT ON COLUMN public.task_schedules.user_id IS 'Owner of the tasks it creates.';

COMMENT ON COLUMN public.task_schedules.cron IS 'Cron expression (5 fields, or 6 with seconds first).';

COMMENT ON COLUMN public.task_schedules.timezone IS 'IANA time zone the cron expression is read in.';

COMMENT ON COLUMN public.task_schedules.enabled IS 'false: creates nothing.';

COMMENT ON COLUMN public.task_schedules.catch_up IS 'After downtime: skip (missed times are dropped) or once (one task for all missed times).';

COMMENT ON COLUMN public.task_schedules.priority IS 'Priority of the tasks it creates.';

COMMENT ON COLUMN public.task_schedules.max_retries IS 'max_retries of the tasks it creates.';

COMMENT ON COLUMN public.task_schedules.label IS 'Label of the tasks it creates.';

COMMENT ON COLUMN public.task_schedules.next_run_at IS 'Next due time.';

COMMENT ON COLUMN public.task_schedules.last_run_at IS 'Latest due time a task was created for.';

COMMENT ON COLUMN public.task_schedules.created_at IS 'When it was created.';

COMMENT ON COLUMN public.task_schedules.updated_at IS 'When it last changed.';

COMMENT ON COLUMN public.task_schedules.last_error IS 'Why the scheduler disabled it (bad cron expression or time zone), or why its latest due time got no task (owner over their creation rate); NULL when fine.';

CREATE VIEW public.task_status_counts AS
 SELECT s.status,
    (COALESCE(sum(c.n), (0)::numeric))::bigint AS tasks
   FROM (unnest(enum_range(NULL::public.task_status)) s(status)
     LEFT JOIN public.task_counts c ON ((c.status = s.status)))
  GROUP BY s.status
  ORDER BY s.status;

COMMENT ON VIEW public.task_status_counts IS 'Tasks by status, every status shown (0 when none), from task_counts: instant at any table size, unlike SELECT status, count(*) FROM background_tasks GROUP BY status.';

CREATE VIEW public.task_type_counts AS
 SELECT task_type,
    (COALESCE(sum(n) FILTER (WHERE (status = 'pending'::public.task_status)), (0)::numeric))::bigint AS pending,
    (COALESCE(sum(n) FILTER (WHERE (status = 'processing'::public.task_status)), (0)::numeric))::bigint AS processing,
    (COALESCE(sum(n) FILTER (WHERE (status = 'completed'::public.task_status)), (0)::numeric))::bigint AS completed,
    (COALESCE(sum(n) FILTER (WHERE (status = 'error'::public.task_status)), (0)::numeric))::bigint AS error,
    (COALESCE(sum(n) FILTER (WHERE (status = 'cancelled'::public.task_status)), (0)::numeric))::bigint AS cancelled,
    (sum(n))::bigint AS total
   FROM public.task_counts
  GROUP BY task_type
 HAVING (sum(n) <> (0)::numeric)
  ORDER BY task_type;

COMMENT ON VIEW public.task_type_counts IS 'Tasks by type, one column per status, from task_counts (no table scan).';

CREATE TABLE public.task_type_limits (
    task_type text NOT NULL,
    max_running integer NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT task_type_limits_max_running_check CHECK ((max_running >= 0))
);

COMMENT ON TABLE public.task_type_limits IS 'Per-type concurrency caps over all workers.';

COMMENT ON COLUMN public.task_type_limits.task_type IS 'The task type.';

COMMENT ON COLUMN public.task_type_limits.max_running IS 'Most tasks of this type processing at once.';

COMMENT ON COLUMN public.task_type_limits.updated_at IS 'When it last changed.';

CREATE VIEW public.task_type_stats AS
 WITH finished AS (
         SELECT background_tasks.task_type,
            background_tasks.status,
            EXTRACT(epoch FROM (background_tasks.completed_at - background_tasks.started_at)) AS run_s,
            EXTRACT(epoch FROM (background_tasks.started_at - background_tasks.created_at)) AS wait_s
           FROM public.background_tasks
          WHERE ((background_tasks.status = ANY (ARRAY['completed'::public.task_status, 'error'::public.task_status, 'cancelled'::public.task_status])) AND (background_tasks.completed_at >= (now() - '24:00:00'::interval)))
        ), attempts AS (
         SELECT t.task_type,
            count(*) AS retried
           FROM (public.task_attempt_errors e
             JOIN public.background_tasks t ON ((t.id = e.task_id)))
          WHERE ((e.failed_at >= (now() - '24:00:00'::interval)) AND (e.outcome = ANY (ARRAY['retried'::text, 'lease_expired'::text])))
          GROUP BY t.task_type
        )
 SELECT f.task_type,
    count(*) FILTER (WHERE (f.status = 'completed'::public.task_status)) AS completed,
    count(*) FILTER (WHERE (f.status = 'error'::public.task_status)) AS failed,
    count(*) FILTER (WHERE (f.status = 'cancelled'::public.task_status)) AS cancelled,
    COALESCE(max(a.retried), (0)::bigint) AS retried_attempts,
    round(((count(*) FILTER (WHERE (f.status = 'error'::public.task_status)))::numeric / (NULLIF(count(*) FILTER (WHERE (f.status = ANY (ARRAY['completed'::public.task_status, 'error'::public.task_status]))), 0))::numeric), 3) AS failure_rate,
    round(avg(f.run_s) FILTER (WHERE (f.status = 'completed'::public.task_status)), 3) AS avg_seconds,
    round((percentile_cont((0.95)::double precision) WITHIN GROUP (ORDER BY ((f.run_s)::double precision)) FILTER (WHERE (f.status = 'completed'::public.task_status)))::numeric, 3) AS p95_seconds,
    round(max(f.run_s) FILTER (WHERE (f.status = 'completed'::public.task_status)), 3) AS max_seconds,
    round(avg(f.wait_s), 3) AS avg_wait_seconds
   FROM (finished f
     LEFT JOIN attempts a USING (task_type))
  GROUP BY f.task_type
  ORDER BY (round(((count(*) FILTER (WHERE (f.status = 'error'::public.task_status)))::numeric / (NULLIF(count(*) FILTER (WHERE (f.status = ANY (ARRAY['completed'::public.task_status, 'error'::public.task_status]))), 0))::numeric), 3)) DESC NULLS LAST, (round((percentile_cont((0.95)::double precision) WITHIN GROUP (ORDER BY ((f.run_s)::double precision)) FILTER (WHERE (f.status = 'completed'::public.task_status)))::numeric, 3)) DESC NULLS LAST;

COMMENT ON VIEW public.task_type_stats IS 'Per task type over the last 24 hours of finished tasks: completed, failed, cancelled, retried attempts, failure rate (failed / (completed + failed)), run time of completed tasks (avg, p95, max; the last attempt: completed_at - started_at) and wait before the last claim. Most failing first; ORDER BY p95_seconds DESC for the slowest.';

CREATE TABLE public.task_type_workers (
    task_type text NOT NULL,
    worker_id text NOT NULL
);

COMMENT ON TABLE public.task_type_workers IS 'Which worker serves which task type; whether the worker is live is in bgtasks_workers.';

COMMENT ON COLUMN public.task_type_workers.task_type IS 'A published type.';

COMMENT ON COLUMN public.task_type_workers.worker_id IS 'A worker that runs it.';

CREATE TABLE public.task_types (
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    payload_schema jsonb DEFAULT '{"type": "object"}'::jsonb NOT NULL,
    result_schema jsonb,
    max_retries integer DEFAULT 3 NOT NULL,
    time_limit_s double precision DEFAULT 900 NOT NULL,
    needs_project boolean DEFAULT false NOT NULL,
    diagnostic boolean DEFAULT false NOT NULL,
    handler text NOT NULL,
    published_by text NOT NULL,
    published_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT task_types_description_check CHECK ((length(description) <= 2000)),
    CONSTRAINT task_types_max_retries_check CHECK (((max_retries >= 0) AND (max_retries <= 100))),
    CONSTRAINT task_types_name_check CHECK ((name ~ '^[a-z][a-z0-9_-]{0,39}$'::text)),
    CONSTRAINT task_types_payload_schema_check CHECK ((jsonb_typeof(payload_schema) = 'object'::text)),
    CONSTRAINT task_types_result_schema_check CHECK (((result_schema IS NULL) OR (jsonb_typeof(result_schema) = 'object'::text))),
    CONSTRAINT task_types_time_limit_s_check CHECK ((time_limit_s > (0)::double precision))
);

COMMENT ON TABLE public.task_types IS 'Task types as the workers serving them published them (the latest publisher wins); the API validates new tasks against payload_schema.';

COMMENT ON COLUMN public.task_types.name IS 'The type, as in background_tasks.task_type.';

COMMENT ON COLUMN public.task_types.description IS 'One line for people: the dashboard and `bgtasks types` show it.';

COMMENT ON COLUMN public.task_types.payload_schema IS 'JSON Schema (2020-12) every new task''s payload must match.';

COMMENT ON COLUMN public.task_types.result_schema IS 'JSON Schema of what the function returns, when its annotation says; NULL: not declared.';

COMMENT ON COLUMN public.task_types.max_retries IS 'Retries a new task gets unless its creator says otherwise.';

COMMENT ON COLUMN public.task_types.time_limit_s IS 'Seconds one attempt may run before the worker stops it.';

COMMENT ON COLUMN public.task_types.needs_project IS 'Seed one''s per-project types: projectId, projectName and projectPath are required.';

COMMENT ON COLUMN public.task_types.diagnostic IS 'A built-in type for checking a deployment (no model involved).';

COMMENT ON COLUMN public.task_types.handler IS 'module:function that runs it, in the publishing worker.';

COMMENT ON COLUMN public.task_types.published_by IS 'The worker (bgtasks_workers.worker_id) that published this version.';

COMMENT ON COLUMN public.task_types.published_at IS 'When that worker published it (at its start).';

CREATE VIEW public.task_types_served AS
SELECT
    NULL::text AS name,
    NULL::text AS description,
    NULL::integer AS max_retries,
    NULL::double precision AS time_limit_s,
    NULL::text AS published_by,
    NULL::timestamp with time zone AS published_at,
    NULL::bigint AS live_workers,
    NULL::jsonb AS payload_schema,
    NULL::jsonb AS result_schema,
    NULL::boolean AS needs_project,
    NULL::boolean AS diagnostic,
    NULL::text AS handler;

COMMENT ON VIEW public.task_types_served IS 'Published task types with how many live workers serve each (0: tasks of it wait for a worker).';

CREATE VIEW public.usage_by_user AS
 SELECT user_id,
    count(DISTINCT task_id) AS tasks,
    count(*) AS model_calls,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(total_tokens) AS total_tokens,
    sum(total_tokens) FILTER (WHERE (created_at >= (now() - '24:00:00'::interval))) AS total_tokens_24h,
    (round(avg(duration_ms)))::integer AS avg_call_ms,
    min(created_at) AS first_call_at,
    max(created_at) AS last_call_at
   FROM public.task_model_calls
  GROUP BY user_id
  ORDER BY (sum(total_tokens)) DESC;

COMMENT ON VIEW public.usage_by_user IS 'Model usage per user from task_model_calls (kept after retention deletes the tasks): calls, tokens all time and in the last 24 hours. For a period: SELECT user_id, sum(total_tokens) FROM task_model_calls WHERE created_at >= ... GROUP BY 1.';

CREATE TABLE public.user_limits (
    user_id text NOT NULL,
    max_running integer,
    max_created_per_minute integer,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    max_streams integer,
    max_schedules integer,
    min_schedule_period_s integer,
    max_cost_usd_per_day numeric(12,4),
    CONSTRAINT user_limits_max_cost_usd_per_day_check CHECK ((max_cost_usd_per_day >= (0)::numeric)),
    CONSTRAINT user_limits_max_created_per_minute_check CHECK ((max_created_per_minute >= 0)),
    CONSTRAINT user_limits_max_running_check CHECK ((max_running >= 0)),
    CONSTRAINT user_limits_max_schedules_check CHECK ((max_schedules >= 0)),
    CONSTRAINT user_limits_max_streams_check CHECK ((max_streams >= 0)),
    CONSTRAINT user_limits_min_schedule_period_s_check CHECK ((min_schedule_period_s >= 1))
);

COMMENT ON TABLE public.user_limits IS 'Per-user limits. The row ''*'' holds the defaults (NULL there: no limit); a user''s own row overrides them column by column (NULL there: the default). Change with SQL, `bgtasks limits set`, or PUT /api/limits/{user}.';

COMMENT ON COLUMN public.user_limits.user_id IS 'The user, or * for the defaults.';

COMMENT ON COLUMN public.user_limits.max_running IS 'Most of this user''s tasks processing at once (claims wait beyond).';

COMMENT ON COLUMN public.user_limits.max_created_per_minute IS 'Most tasks this user may create in any 60 seconds, schedules'' tasks included (HTTP 429 beyond).';

COMMENT ON COLUMN public.user_limits.updated_at IS 'When it last changed.';

COMMENT ON COLUMN public.user_limits.max_streams IS 'Most live streams (SSE and WebSocket) this user may have open on one API process (HTTP 429 beyond); NULL: BGTASKS_MAX_STREAMS_PER_USER.';

COMMENT ON COLUMN public.user_limits.max_schedules IS 'Most schedules this user may own (HTTP 409 beyond).';

COMMENT ON COLUMN public.user_limits.min_schedule_period_s IS 'Shortest time in seconds between two runs of one of this user''s schedules (HTTP 422 below).';

COMMENT ON COLUMN public.user_limits.max_cost_usd_per_day IS 'Most this user''s model calls may cost per UTC day, in US dollars (task_model_calls.cost_usd); past it, a new model call fails its task with a clear error. NULL: no cap.';

ALTER TABLE ONLY public.background_tasks ALTER COLUMN change_seq SET DEFAULT nextval('public.background_task_changes'::regclass);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.background_tasks
    ADD CONSTRAINT background_tasks_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.bgtasks_workers
    ADD CONSTRAINT bgtasks_workers_pkey PRIMARY KEY (worker_id);

ALTER TABLE ONLY public.lease_reaper
    ADD CONSTRAINT lease_reaper_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.model_prices
    ADD CONSTRAINT model_prices_pkey PRIMARY KEY (model);

ALTER TABLE ONLY public.provider_budget_reservations
    ADD CONSTRAINT provider_budget_reservations_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.provider_budget_waits
    ADD CONSTRAINT provider_budget_waits_pkey PRIMARY KEY (task_id);

ALTER TABLE ONLY public.provider_budgets
    ADD CONSTRAINT provider_budgets_pkey PRIMARY KEY (provider, model);

ALTER TABLE ONLY public.questions
    ADD CONSTRAINT questions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.service_secrets
    ADD CONSTRAINT service_secrets_pkey PRIMARY KEY (name);

ALTER TABLE ONLY public.task_attempt_errors
    ADD CONSTRAINT task_attempt_errors_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.task_counts
    ADD CONSTRAINT task_counts_pkey PRIMARY KEY (user_id, task_type, status, shard);

ALTER TABLE ONLY public.task_creation_counts
    ADD CONSTRAINT task_creation_counts_pkey PRIMARY KEY (user_id, second, shard);

ALTER TABLE ONLY public.task_dependencies
    ADD CONSTRAINT task_dependencies_pkey PRIMARY KEY (task_id, depends_on);

ALTER TABLE ONLY public.task_finish_stats
    ADD CONSTRAINT task_finish_stats_pkey PRIMARY KEY (slot, task_type, status, metric, bucket, shard);

ALTER TABLE ONLY public.task_model_calls
    ADD CONSTRAINT task_model_calls_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.task_output
    ADD CONSTRAINT task_output_pkey PRIMARY KEY (task_id, seq);

ALTER TABLE ONLY public.task_queue_settings
    ADD CONSTRAINT task_queue_settings_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.task_schedules
    ADD CONSTRAINT task_schedules_pkey PRIMARY KEY (user_id, name);

ALTER TABLE ONLY public.task_type_limits
    ADD CONSTRAINT task_type_limits_pkey PRIMARY KEY (task_type);

ALTER TABLE ONLY public.task_type_workers
    ADD CONSTRAINT task_type_workers_pkey PRIMARY KEY (task_type, worker_id);

ALTER TABLE ONLY public.task_types
    ADD CONSTRAINT task_types_pkey PRIMARY KEY (name);

ALTER TABLE ONLY public.user_limits
    ADD CONSTRAINT user_limits_pkey PRIMARY KEY (user_id);

CREATE INDEX background_tasks_change_idx ON public.background_tasks USING btree (change_seq);

COMMENT ON INDEX public.background_tasks_change_idx IS 'Last-Event-ID resume: what changed since a change number.';

CREATE INDEX background_tasks_claimable_idx ON public.background_tasks USING btree (user_id, priority DESC, run_at, id) WHERE ((status = 'pending'::public.task_status) AND (waiting_for = 0));

COMMENT ON INDEX public.background_tasks_claimable_idx IS 'Serves the claim: the rows of the view claimable_tasks (its predicate, the claim condition), by owner and in claim order (the owners are found by skipping through it).';

CREATE INDEX background_tasks_created_idx ON public.background_tasks USING btree (created_at, id);

COMMENT ON INDEX public.background_tasks_created_idx IS 'Everyone''s tasks by creation time, either direction (sort=±createdAt).';

CREATE INDEX background_tasks_description_search_idx ON public.background_tasks USING gin (description public.gin_trgm_ops);

COMMENT ON INDEX public.background_tasks_description_search_idx IS 'Search (q=): description ILIKE ''%text%'', by trigrams (pg_trgm).';

CREATE INDEX background_tasks_finished_idx ON public.background_tasks USING btree (completed_at) WHERE (status = ANY (ARRAY['completed'::public.task_status, 'error'::public.task_status, 'cancelled'::public.task_status]));

COMMENT ON INDEX public.background_tasks_finished_idx IS 'Retention: finished tasks oldest first.';

CREATE UNIQUE INDEX background_tasks_idempotency_key ON public.background_tasks USING btree (user_id, idempotency_key) WHERE (idempotency_key IS NOT NULL);

COMMENT ON INDEX public.background_tasks_idempotency_key IS 'A repeated Idempotency-Key returns the first task, never a second.';

CREATE INDEX background_tasks_label_search_idx ON public.background_tasks USING gin (label public.gin_trgm_ops);

COMMENT ON INDEX public.background_tasks_label_search_idx IS 'Search (q=): label ILIKE ''%text%'', by trigrams (pg_trgm).';

CREATE INDEX background_tasks_priority_idx ON public.background_tasks USING btree (priority, id);

COMMENT ON INDEX public.background_tasks_priority_idx IS 'Everyone''s tasks by priority, either direction (sort=±priority).';

CREATE INDEX background_tasks_processing_idx ON public.background_tasks USING btree (lease_expires_at) WHERE (status = 'processing'::public.task_status);

COMMENT ON INDEX public.background_tasks_processing_idx IS 'Running tasks: the global-limit count and the lease reaper.';

CREATE INDEX background_tasks_project_idx ON public.background_tasks USING btree (project_id, created_at DESC) WHERE (project_id IS NOT NULL);

COMMENT ON INDEX public.background_tasks_project_idx IS 'Per-project listing (seed one), newest first.';

CREATE UNIQUE INDEX background_tasks_schedule_due ON public.background_tasks USING btree (user_id, schedule_name, scheduled_for) WHERE (schedule_name IS NOT NULL);

COMMENT ON INDEX public.background_tasks_schedule_due IS 'Exactly one task per schedule (owner and name) and due time, whatever the number of workers.';

CREATE INDEX background_tasks_schedule_idx ON public.background_tasks USING btree (schedule_name, scheduled_for DESC) WHERE (schedule_name IS NOT NULL);

COMMENT ON INDEX public.background_tasks_schedule_idx IS 'A schedule''s tasks, latest due time first.';

CREATE INDEX background_tasks_unfinished_idx ON public.background_tasks USING btree (status) WHERE (status = ANY (ARRAY['pending'::public.task_status, 'processing'::public.task_status]));

COMMENT ON INDEX public.background_tasks_unfinished_idx IS 'The unfinished tasks (pending, processing), for lists filtered to them: a handful among millions finished.';

CREATE INDEX background_tasks_updated_idx ON public.background_tasks USING btree (updated_at, id);

COMMENT ON INDEX public.background_tasks_updated_idx IS 'Everyone''s tasks by last change, either direction (sort=±updatedAt).';

CREATE INDEX background_tasks_user_idx ON public.background_tasks USING btree (user_id, created_at, id);

COMMENT ON INDEX public.background_tasks_user_idx IS 'A user''s tasks by creation time, either direction (sort=±createdAt).';

CREATE INDEX background_tasks_user_priority_idx ON public.background_tasks USING btree (user_id, priority, id);

COMMENT ON INDEX public.background_tasks_user_priority_idx IS 'A user''s tasks by priority, either direction (sort=±priority).';

CREATE INDEX background_tasks_user_updated_idx ON public.background_tasks USING btree (user_id, updated_at, id);

COMMENT ON INDEX public.background_tasks_user_updated_idx IS 'A user''s tasks by last change, either direction (sort=±updatedAt).';

CREATE INDEX provider_budget_reservations_window_idx ON public.provider_budget_reservations USING btree (provider, model, counts_until);

CREATE INDEX provider_budget_waits_budget_idx ON public.provider_budget_waits USING btree (provider, model, until);

CREATE INDEX questions_user_idx ON public.questions USING btree (user_id, created_at DESC);

CREATE INDEX task_attempt_errors_failed_idx ON public.task_attempt_errors USING btree (failed_at);

COMMENT ON INDEX public.task_attempt_errors_failed_idx IS 'Recent failed attempts: metrics and task_type_stats.';

CREATE INDEX task_attempt_errors_task_idx ON public.task_attempt_errors USING btree (task_id, attempt);

CREATE INDEX task_dependencies_depends_on_idx ON public.task_dependencies USING btree (depends_on);

CREATE INDEX task_model_calls_created_idx ON public.task_model_calls USING btree (created_at);

CREATE INDEX task_model_calls_task_idx ON public.task_model_calls USING btree (task_id);

CREATE INDEX task_model_calls_user_idx ON public.task_model_calls USING btree (user_id, created_at);

CREATE INDEX task_output_seq_idx ON public.task_output USING btree (seq);

CREATE INDEX task_schedules_due_idx ON public.task_schedules USING btree (next_run_at) WHERE enabled;

COMMENT ON INDEX public.task_schedules_due_idx IS 'The scheduler tick: enabled schedules by due time.';

CREATE INDEX task_schedules_user_idx ON public.task_schedules USING btree (user_id);

COMMENT ON INDEX public.task_schedules_user_idx IS 'A user''s schedules: listing and the max_schedules count.';

CREATE INDEX task_type_workers_worker ON public.task_type_workers USING btree (worker_id);

CREATE OR REPLACE VIEW public.task_types_served AS
 SELECT t.name,
    t.description,
    t.max_retries,
    t.time_limit_s,
    t.published_by,
    t.published_at,
    count(w.worker_id) FILTER (WHERE ((w.stopped_at IS NULL) AND (w.heartbeat_at >= (now() - public.worker_stale_after())))) AS live_workers,
    t.payload_schema,
    t.result_schema,
    t.needs_project,
    t.diagnostic,
    t.handler
   FROM ((public.task_types t
     LEFT JOIN public.task_type_workers s ON ((s.task_type = t.name)))
     LEFT JOIN public.bgtasks_workers w ON ((w.worker_id = s.worker_id)))
  GROUP BY t.name
  ORDER BY t.name;

CREATE TRIGGER api_keys_notify_change AFTER UPDATE OF revoked_at, user_id, is_superuser ON public.api_keys FOR EACH ROW WHEN ((((old.revoked_at IS DISTINCT FROM new.revoked_at) AND (new.revoked_at IS NOT NULL)) OR (old.user_id IS DISTINCT FROM new.user_id) OR (old.is_superuser IS DISTINCT FROM new.is_superuser))) EXECUTE FUNCTION public.notify_api_key_change();

CREATE TRIGGER api_keys_notify_delete AFTER DELETE ON public.api_keys FOR EACH ROW EXECUTE FUNCTION public.notify_api_key_change();

CREATE TRIGGER background_tasks_after_delete AFTER DELETE ON public.background_tasks REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.background_tasks_after_delete();

COMMENT ON TRIGGER background_tasks_after_delete ON public.background_tasks IS 'NOTIFY bgtasks_tasks with status deleted and count.';

CREATE TRIGGER background_tasks_after_finish AFTER UPDATE ON public.background_tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.background_tasks_after_finish();

COMMENT ON TRIGGER background_tasks_after_finish ON public.background_tasks IS 'Adds the tasks that finished (completed, error, cancelled) to task_finish_stats, for GET /metrics.';

CREATE TRIGGER background_tasks_after_insert AFTER INSERT ON public.background_tasks REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.background_tasks_after_insert();

COMMENT ON TRIGGER background_tasks_after_insert ON public.background_tasks IS 'NOTIFY bgtasks_tasks (one per statement), count (task_counts), count the creations (task_creation_counts) and add tasks inserted finished to task_finish_stats.';

CREATE TRIGGER background_tasks_after_truncate AFTER TRUNCATE ON public.background_tasks FOR EACH STATEMENT EXECUTE FUNCTION public.background_tasks_after_truncate();

COMMENT ON TRIGGER background_tasks_after_truncate ON public.background_tasks IS 'Reset task_counts and task_creation_counts.';

CREATE TRIGGER background_tasks_after_update AFTER UPDATE ON public.background_tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.background_tasks_after_update();

COMMENT ON TRIGGER background_tasks_after_update ON public.background_tasks IS 'NOTIFY bgtasks_tasks for visible changes (not heartbeats) and count.';

CREATE TRIGGER background_tasks_before_change BEFORE UPDATE ON public.background_tasks FOR EACH ROW WHEN (((((((((((old.status IS DISTINCT FROM new.status) OR (old.progress IS DISTINCT FROM new.progress)) OR (old.description IS DISTINCT FROM new.description)) OR (old.label IS DISTINCT FROM new.label)) OR (old.priority IS DISTINCT FROM new.priority)) OR (old.run_at IS DISTINCT FROM new.run_at)) OR (old.error_message IS DISTINCT FROM new.error_message)) OR (old.max_retries IS DISTINCT FROM new.max_retries)) OR (old.waiting_for IS DISTINCT FROM new.waiting_for)) OR (old.result_data IS DISTINCT FROM new.result_data))) EXECUTE FUNCTION public.background_tasks_before_change();

COMMENT ON TRIGGER background_tasks_before_change ON public.background_tasks IS 'Refuses illegal status moves (SQLSTATE BG409), stamps updated_at, completed_at and change_seq; a move to processing that set no lease (not a claim) gets a new attempt held by sql:<role> with a 30-second lease. Lease heartbeats do not fire it.';

CREATE TRIGGER background_tasks_before_delete BEFORE DELETE ON public.background_tasks FOR EACH ROW WHEN ((old.status = ANY (ARRAY['pending'::public.task_status, 'processing'::public.task_status]))) EXECUTE FUNCTION public.background_tasks_before_delete();

COMMENT ON TRIGGER background_tasks_before_delete ON public.background_tasks IS 'Deleting an unfinished upstream task cancels what depends on it ("dependency X was deleted").';

CREATE TRIGGER background_tasks_output_cleanup AFTER UPDATE ON public.background_tasks REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.task_output_cleanup();

CREATE TRIGGER background_tasks_release_dependents AFTER UPDATE ON public.background_tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.background_tasks_release_dependents();

COMMENT ON TRIGGER background_tasks_release_dependents ON public.background_tasks IS 'Completed: dependents'' waiting_for - 1 (claimable at 0). error/cancelled: unfinished downstream tasks are cancelled.';

CREATE TRIGGER provider_budgets_changed BEFORE UPDATE ON public.provider_budgets FOR EACH ROW WHEN ((((old.requests_per_minute IS DISTINCT FROM new.requests_per_minute) OR (old.tokens_per_minute IS DISTINCT FROM new.tokens_per_minute)) OR (old.window_seconds IS DISTINCT FROM new.window_seconds))) EXECUTE FUNCTION public.provider_budgets_changed();

COMMENT ON TRIGGER provider_budgets_changed ON public.provider_budgets IS 'A change of the limits wakes the tasks waiting for the budget and resets its adapted share (shrink_factor).';

CREATE TRIGGER provider_budgets_deleted BEFORE DELETE ON public.provider_budgets FOR EACH ROW EXECUTE FUNCTION public.provider_budgets_changed();

COMMENT ON TRIGGER provider_budgets_deleted ON public.provider_budgets IS 'A deleted budget wakes the tasks waiting for it.';

CREATE TRIGGER task_queue_settings_changed BEFORE UPDATE ON public.task_queue_settings FOR EACH ROW WHEN ((((((old.is_active IS DISTINCT FROM new.is_active) OR (old.poll_interval IS DISTINCT FROM new.poll_interval)) OR (old.max_concurrent_tasks IS DISTINCT FROM new.max_concurrent_tasks)) OR (old.retry_base_delay_ms IS DISTINCT FROM new.retry_base_delay_ms)) OR (old.retry_max_delay_ms IS DISTINCT FROM new.retry_max_delay_ms))) EXECUTE FUNCTION public.task_queue_settings_changed();

COMMENT ON TRIGGER task_queue_settings_changed ON public.task_queue_settings IS 'NOTIFY bgtasks_queue so workers and dashboards see start/stop and limits at once.';

CREATE TRIGGER task_schedules_before_change BEFORE INSERT OR UPDATE OF cron, timezone, enabled, task_type, payload, user_id, catch_up, priority, max_retries, label ON public.task_schedules FOR EACH ROW EXECUTE FUNCTION public.task_schedules_before_change();

COMMENT ON TRIGGER task_schedules_before_change ON public.task_schedules IS 'Stamps updated_at; a new, re-timed or re-enabled schedule gets next_run_at NULL (the scheduler sets it from now).';

ALTER TABLE ONLY public.provider_budget_reservations
    ADD CONSTRAINT provider_budget_reservations_provider_model_fkey FOREIGN KEY (provider, model) REFERENCES public.provider_budgets(provider, model) ON UPDATE CASCADE ON DELETE CASCADE;

ALTER TABLE ONLY public.provider_budget_waits
    ADD CONSTRAINT provider_budget_waits_task_id_fkey FOREIGN KEY (task_id) REFERENCES public.background_tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.questions
    ADD CONSTRAINT questions_task_id_fkey FOREIGN KEY (task_id) REFERENCES public.background_tasks(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.task_attempt_errors
    ADD CONSTRAINT task_attempt_errors_task_id_fkey FOREIGN KEY (task_id) REFERENCES public.background_tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.task_dependencies
    ADD CONSTRAINT task_dependencies_depends_on_fkey FOREIGN KEY (depends_on) REFERENCES public.background_tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.task_dependencies
    ADD CONSTRAINT task_dependencies_task_id_fkey FOREIGN KEY (task_id) REFERENCES public.background_tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.task_output
    ADD CONSTRAINT task_output_task_id_fkey FOREIGN KEY (task_id) REFERENCES public.background_tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.task_type_workers
    ADD CONSTRAINT task_type_workers_task_type_fkey FOREIGN KEY (task_type) REFERENCES public.task_types(name) ON DELETE CASCADE;

ALTER TABLE ONLY public.task_type_workers
    ADD CONSTRAINT task_type_workers_worker_id_fkey FOREIGN KEY (worker_id) REFERENCES public.bgtasks_workers(worker_id) ON DELETE CASCADE;
