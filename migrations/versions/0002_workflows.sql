-- Workflows (seed two's "future improvements"): schedules, dependencies between tasks, per-user and
-- per-type limits.

CREATE TABLE task_schedules (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
    task_type     text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    user_id       text NOT NULL,
    cron          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    enabled       boolean NOT NULL DEFAULT true,
    catch_up      text NOT NULL DEFAULT 'skip' CHECK (catch_up IN ('skip', 'once')),
    priority      integer NOT NULL DEFAULT 0,
    max_retries   integer NOT NULL DEFAULT 3,
    label         text,
    next_run_at   timestamptz,
    last_run_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE task_schedules IS 'Named cron schedules that create tasks on time; exactly one task per due time (unique index on background_tasks).';
COMMENT ON COLUMN task_schedules.name IS 'Schedule name (unique).';
COMMENT ON COLUMN task_schedules.task_type IS 'Type of the tasks it creates.';
COMMENT ON COLUMN task_schedules.payload IS 'Payload of the tasks it creates.';
COMMENT ON COLUMN task_schedules.user_id IS 'Owner of the tasks it creates.';
COMMENT ON COLUMN task_schedules.cron IS 'Cron expression (5 fields, or 6 with seconds first).';
COMMENT ON COLUMN task_schedules.timezone IS 'IANA time zone the cron expression is read in.';
COMMENT ON COLUMN task_schedules.enabled IS 'false: creates nothing.';
COMMENT ON COLUMN task_schedules.catch_up IS 'After downtime: skip (missed times are dropped) or once (one task for all missed times).';
COMMENT ON COLUMN task_schedules.priority IS 'Priority of the tasks it creates.';
COMMENT ON COLUMN task_schedules.max_retries IS 'max_retries of the tasks it creates.';
COMMENT ON COLUMN task_schedules.label IS 'Label of the tasks it creates.';
COMMENT ON COLUMN task_schedules.next_run_at IS 'Next due time.';
COMMENT ON COLUMN task_schedules.last_run_at IS 'Latest due time a task was created for.';
COMMENT ON COLUMN task_schedules.created_at IS 'When it was created.';
COMMENT ON COLUMN task_schedules.updated_at IS 'When it last changed.';

CREATE TABLE task_dependencies (
    task_id    text NOT NULL REFERENCES background_tasks (id) ON DELETE CASCADE,
    depends_on text NOT NULL REFERENCES background_tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, depends_on),
    CHECK (task_id <> depends_on)
);
CREATE INDEX task_dependencies_depends_on_idx ON task_dependencies (depends_on);
COMMENT ON TABLE task_dependencies IS 'task_id waits until depends_on has completed (background_tasks.waiting_for counts the rest).';
COMMENT ON COLUMN task_dependencies.task_id IS 'The waiting task.';
COMMENT ON COLUMN task_dependencies.depends_on IS 'The task it waits for.';

CREATE TABLE user_limits (
    user_id                text PRIMARY KEY,
    max_running            integer CHECK (max_running >= 0),
    max_created_per_minute integer CHECK (max_created_per_minute >= 0),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE user_limits IS 'Per-user limits; the row with user_id ''*'' is the default for users without a row of their own. NULL: no limit.';
COMMENT ON COLUMN user_limits.user_id IS 'The user, or * for everyone without a row.';
COMMENT ON COLUMN user_limits.max_running IS 'Most of this user''s tasks processing at once.';
COMMENT ON COLUMN user_limits.max_created_per_minute IS 'Most tasks this user may create in any 60 seconds (HTTP 429 beyond).';
COMMENT ON COLUMN user_limits.updated_at IS 'When it last changed.';

CREATE TABLE task_type_limits (
    task_type   text PRIMARY KEY,
    max_running integer NOT NULL CHECK (max_running >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE task_type_limits IS 'Per-type concurrency caps over all workers.';
COMMENT ON COLUMN task_type_limits.task_type IS 'The task type.';
COMMENT ON COLUMN task_type_limits.max_running IS 'Most tasks of this type processing at once.';
COMMENT ON COLUMN task_type_limits.updated_at IS 'When it last changed.';

ALTER TABLE task_schedules ADD COLUMN last_error text;
COMMENT ON COLUMN task_schedules.last_error IS 'Why the scheduler disabled it (bad cron expression or time zone); NULL when fine.';
ALTER TABLE task_schedules ADD CONSTRAINT task_schedules_task_type_check CHECK (task_type ~ '^[a-z][a-z0-9_-]{0,39}$');
ALTER TABLE task_schedules ADD CONSTRAINT task_schedules_payload_check CHECK (jsonb_typeof(payload) = 'object');
ALTER TABLE task_schedules ADD CONSTRAINT task_schedules_max_retries_check CHECK (max_retries BETWEEN 0 AND 100);
CREATE INDEX task_schedules_due_idx ON task_schedules (next_run_at) WHERE enabled;
COMMENT ON INDEX task_schedules_due_idx IS 'The scheduler tick: enabled schedules by due time.';

-- A changed cron expression or time zone, or a schedule enabled again, starts afresh from now: the scheduler
-- computes next_run_at (it is NULL until then), so the time a schedule was off is not caught up.
CREATE FUNCTION task_schedules_before_change() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER task_schedules_before_change BEFORE INSERT OR UPDATE OF cron, timezone, enabled, task_type, payload,
    user_id, catch_up, priority, max_retries, label ON task_schedules
    FOR EACH ROW EXECUTE FUNCTION task_schedules_before_change();
COMMENT ON TRIGGER task_schedules_before_change ON task_schedules IS
  'Stamps updated_at; a new, re-timed or re-enabled schedule gets next_run_at NULL (the scheduler sets it from now).';

CREATE INDEX background_tasks_schedule_idx ON background_tasks (schedule_name, scheduled_for DESC)
    WHERE schedule_name IS NOT NULL;
COMMENT ON INDEX background_tasks_schedule_idx IS 'A schedule''s tasks, latest due time first.';

-- ---------------------------------------------------------------------------------------------------------
-- Dependencies. A task with unfinished upstream tasks has waiting_for > 0 and the claim index skips it. When an
-- upstream task completes, its dependents' waiting_for goes down (claimable at 0; the UPDATE notifies, so
-- workers wake). When one ends in error or cancelled, everything downstream that has not finished is
-- cancelled, with a cancel_reason naming the upstream task.

-- Everything downstream of `roots` that has not finished, with the task it depends on through (`via`) and the
-- root it comes from. One recursive query instead of a trigger cascade: a long chain costs no stack depth.
CREATE FUNCTION task_downstream(roots text[])
RETURNS TABLE (task_id text, via text, root text) LANGUAGE sql STABLE AS $$
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
COMMENT ON FUNCTION task_downstream(text[]) IS
  'Unfinished tasks that depend, directly or not, on any of roots: (task_id, the upstream task it waits on, the root).';

-- Cancel everything downstream of `roots`; `why` maps each root to what happened to it ("ended in error").
CREATE FUNCTION cancel_downstream(roots text[], whys text[]) RETURNS integer LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION cancel_downstream(text[], text[]) IS
  'Cancel the unfinished tasks downstream of roots (cancel_reason names the dependency and the root). Returns how many.';

-- After each UPDATE statement on background_tasks. Cheap when there is nothing to do: it looks only at rows
-- whose status just became final, and only at those that have dependents (task_dependencies_depends_on_idx).
CREATE FUNCTION background_tasks_release_dependents() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER background_tasks_release_dependents AFTER UPDATE ON background_tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION background_tasks_release_dependents();
COMMENT ON TRIGGER background_tasks_release_dependents ON background_tasks IS
  'Completed: dependents'' waiting_for - 1 (claimable at 0). error/cancelled: unfinished downstream tasks are cancelled.';

-- Deleting an upstream task that has not completed would leave its dependents waiting forever (the foreign
-- key removes the dependency row): they are cancelled instead. Deleting a completed one changes nothing.
-- Row-level so it sees the dependency rows before the cascade removes them; its WHEN skips finished rows,
-- so retention (which deletes completed tasks) never calls it.
CREATE FUNCTION background_tasks_before_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM task_dependencies d WHERE d.depends_on = OLD.id) THEN
        PERFORM cancel_downstream(ARRAY[OLD.id], ARRAY['was deleted']);
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER background_tasks_before_delete BEFORE DELETE ON background_tasks
    FOR EACH ROW WHEN (OLD.status IN ('pending', 'processing'))
    EXECUTE FUNCTION background_tasks_before_delete();
COMMENT ON TRIGGER background_tasks_before_delete ON background_tasks IS
  'Deleting an unfinished upstream task cancels what depends on it ("dependency X was deleted").';

-- Record that a task waits for others. Refuses unknown ids (or another owner's: same answer, BG404) and
-- cycles (BG422). Upstream tasks already completed do not count; one already in error or cancelled cancels
-- the task at once. The task must be pending; its row is locked, so no worker claims it meanwhile.
CREATE FUNCTION add_task_dependencies(dependent text, upstream text[]) RETURNS background_tasks
LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION add_task_dependencies(text, text[]) IS
  'Make a pending task wait for others (same owner): refuses unknown ids (BG404) and cycles (BG422); completed ones do not count; a failed or cancelled one cancels it at once.';

CREATE FUNCTION task_upstream_results(dependent text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(b.id, b.result_data ORDER BY b.completed_at, b.id), '{}'::jsonb)
    FROM task_dependencies d JOIN background_tasks b ON b.id = d.depends_on
    WHERE d.task_id = dependent AND b.status = 'completed'
$$;
COMMENT ON FUNCTION task_upstream_results(text) IS
  'The results of the completed tasks a task depends on: {"upstream id": result_data, ...} (chains pass results on).';

-- ---------------------------------------------------------------------------------------------------------
-- Per-user and per-type running limits, at claim time, like the global limit.

CREATE FUNCTION user_running_limit(who text) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN own.user_id IS NOT NULL THEN own.max_running ELSE star.max_running END
    FROM (SELECT 1) one
    LEFT JOIN user_limits own ON own.user_id = who
    LEFT JOIN user_limits star ON star.user_id = '*'
$$;
COMMENT ON FUNCTION user_running_limit(text) IS
  'The running limit of a user: its own user_limits row, else the * row; NULL: none.';

CREATE FUNCTION user_creation_limit(who text) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN own.user_id IS NOT NULL THEN own.max_created_per_minute ELSE star.max_created_per_minute END
    FROM (SELECT 1) one
    LEFT JOIN user_limits own ON own.user_id = who
    LEFT JOIN user_limits star ON star.user_id = '*'
$$;
COMMENT ON FUNCTION user_creation_limit(text) IS
  'Tasks a user may create per 60 seconds: its own user_limits row, else the * row; NULL: no limit.';

-- Replaces 0001's claim_tasks (same signature, same global-limit logic). Without per-user or per-type limits
-- it is the same single statement as before: no lock and no counting. With them, claimers take turns on the
-- same advisory lock as the global limit and count running rows under it (a fresh snapshot per statement);
-- candidates are read in claim order, skipping users and types already at their limit, then ranked per user
-- and per type so that running + rank stays within each limit.
CREATE OR REPLACE FUNCTION claim_tasks(worker text, max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
DECLARE
    settings task_queue_settings;
    free integer := max_tasks;
    limited boolean;
BEGIN
    SELECT * INTO settings FROM task_queue_settings WHERE id = 1;
    IF NOT FOUND OR NOT settings.is_active OR max_tasks <= 0 THEN
        RETURN;
    END IF;
    limited := EXISTS (SELECT FROM user_limits WHERE max_running IS NOT NULL)
               OR EXISTS (SELECT FROM task_type_limits);
    IF settings.max_concurrent_tasks IS NOT NULL OR limited THEN
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
    IF NOT limited THEN
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
        RETURN;
    END IF;

    RETURN QUERY
    WITH running AS MATERIALIZED (
        SELECT r.user_id, r.task_type, count(*)::integer AS n FROM background_tasks r
        WHERE r.status = 'processing' GROUP BY 1, 2
    ), user_room AS MATERIALIZED (  -- users with a limit and something running
        SELECT u.user_id, u.lim - u.n AS room FROM (
            SELECT r.user_id, sum(r.n)::integer AS n, user_running_limit(r.user_id) AS lim
            FROM running r GROUP BY 1) u
        WHERE u.lim IS NOT NULL
    ), type_room AS MATERIALIZED (
        SELECT l.task_type, l.max_running - coalesce(sum(r.n), 0)::integer AS room
        FROM task_type_limits l LEFT JOIN running r USING (task_type) GROUP BY l.task_type, l.max_running
    ), candidates AS (  -- in claim order, past the queued work of users and types with no room left
        SELECT c.id, c.user_id, c.task_type, c.priority, c.run_at FROM background_tasks c
        WHERE c.status = 'pending' AND c.waiting_for = 0 AND c.run_at <= now()
          AND NOT EXISTS (SELECT FROM user_room u WHERE u.user_id = c.user_id AND u.room <= 0)
          AND NOT EXISTS (SELECT FROM type_room y WHERE y.task_type = c.task_type AND y.room <= 0)
          AND NOT EXISTS (SELECT FROM user_limits z WHERE z.user_id = c.user_id AND z.max_running = 0)
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT free * 10 + 100
    ), ranked AS (
        SELECT c.*,
               row_number() OVER (PARTITION BY c.user_id ORDER BY c.priority DESC, c.run_at, c.id) AS user_rank,
               row_number() OVER (PARTITION BY c.task_type ORDER BY c.priority DESC, c.run_at, c.id) AS type_rank
        FROM candidates c
    ), allowed AS (  -- a candidate ranked k-th of its user fits if running + k stays within the limit
        SELECT r.id, r.priority, r.run_at FROM ranked r
        LEFT JOIN user_room u ON u.user_id = r.user_id
        LEFT JOIN type_room y ON y.task_type = r.task_type
        WHERE r.user_rank <= coalesce(u.room, user_running_limit(r.user_id), r.user_rank)
          AND r.type_rank <= coalesce(y.room, r.type_rank)
        ORDER BY r.priority DESC, r.run_at, r.id
        LIMIT free
    ), picked AS (  -- by primary key, never a scan
        SELECT c.id FROM allowed a JOIN background_tasks c ON c.id = a.id
        WHERE c.status = 'pending' AND c.waiting_for = 0
        FOR UPDATE OF c SKIP LOCKED
    )
    UPDATE background_tasks t
    SET status = 'processing', worker_id = worker, attempt = t.attempt + 1, started_at = now(),
        lease_expires_at = now() + make_interval(secs => lease_seconds)
    FROM picked
    WHERE t.id = picked.id
    RETURNING t.*;
END
$$;
COMMENT ON FUNCTION claim_tasks(text, integer, double precision) IS
  'Worker claim: up to max_tasks pending tasks (priority, then age; run_at due; not waiting), under is_active, max_concurrent_tasks, and the per-user (user_limits) and per-type (task_type_limits) running limits. Sets processing, worker_id, attempt + 1 and the lease.';

-- ---------------------------------------------------------------------------------------------------------
-- Creation rate limit: the API calls this inside the transaction that creates the tasks.

-- background_tasks_user_idx (user_id, created_at DESC), from 0001, serves the count.
CREATE FUNCTION check_creation_rate(who text, n_new integer DEFAULT 1) RETURNS void LANGUAGE plpgsql AS $$
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
    -- One creator per user at a time, until its transaction ends: the count below then includes every task
    -- the previous creator committed (each plpgsql statement takes a fresh snapshot).
    PERFORM pg_advisory_xact_lock(hashtext('bgtasks.rate:' || who));
    since := clock_timestamp() - interval '60 seconds';
    SELECT count(*) INTO recent FROM background_tasks WHERE user_id = who AND created_at > since;
    over := recent + n_new - lim;
    IF over <= 0 THEN
        RETURN;
    END IF;
    -- Room for n_new comes when the `over` oldest tasks of the window have aged out of it.
    SELECT created_at INTO oldest FROM background_tasks WHERE user_id = who AND created_at > since
    ORDER BY created_at OFFSET over - 1 LIMIT 1;
    wait_s := greatest(1, ceil(extract(epoch FROM oldest + interval '60 seconds' - clock_timestamp()))::integer);
    RAISE EXCEPTION 'rate limit: user % created % tasks in the last minute (limit %); retry in % s',
        who, recent, lim, wait_s
        USING ERRCODE = 'BG429', DETAIL = wait_s::text, HINT = 'Retry-After: ' || wait_s;
END
$$;
COMMENT ON FUNCTION check_creation_rate(text, integer) IS
  'Call before creating n_new tasks for a user, in the same transaction: raises SQLSTATE BG429 (DETAIL: seconds to wait, for Retry-After) when over user_limits.max_created_per_minute.';

-- ---------------------------------------------------------------------------------------------------------
-- Analytics over tasks created in [since, until): per user or per type.

CREATE FUNCTION task_analytics(since timestamptz, until timestamptz, group_by text DEFAULT 'type',
                               only_user text DEFAULT NULL)
RETURNS TABLE (
    key text, total bigint, pending bigint, processing bigint, completed bigint, failed bigint,
    cancelled bigint, success_rate double precision, duration_p50_s double precision,
    duration_p95_s double precision, queue_wait_p50_s double precision, queue_wait_p95_s double precision,
    retries bigint, prompt_tokens bigint, completion_tokens bigint
) LANGUAGE plpgsql STABLE AS $$
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
COMMENT ON FUNCTION task_analytics(timestamptz, timestamptz, text, text) IS
  'Per user or per type (group_by), over tasks created in [since, until) (of only_user when given): counts by status, success rate = completed / (completed + error), p50/p95 run time (completed) and queue wait (started - created, in seconds), retries, and model tokens of the calls made in the period.';

CREATE VIEW task_analytics_by_type AS
    SELECT * FROM task_analytics(now() - interval '24 hours', now() + interval '1 second', 'type');
COMMENT ON VIEW task_analytics_by_type IS 'task_analytics over the last 24 hours, per task type.';
CREATE VIEW task_analytics_by_user AS
    SELECT * FROM task_analytics(now() - interval '24 hours', now() + interval '1 second', 'user');
COMMENT ON VIEW task_analytics_by_user IS 'task_analytics over the last 24 hours, per user.';
