-- Downgrade of 0008: the limit functions as 0002 defined them (a user's own user_limits row wins even where
-- NULL), claim_tasks() and complete_and_claim() as 0010 defined them (priority order over the whole queue,
-- for the types the worker serves).

DROP FUNCTION check_schedule_quota(text);
COMMENT ON COLUMN task_schedules.last_error IS 'Why the scheduler disabled it (bad cron expression or time zone); NULL when fine.';
DROP INDEX task_schedules_user_idx;
CREATE INDEX background_tasks_claim_idx ON background_tasks (priority DESC, run_at, id)
    WHERE status = 'pending' AND waiting_for = 0;
COMMENT ON INDEX background_tasks_claim_idx IS 'Serves the claim: claimable rows in claim order.';

CREATE OR REPLACE FUNCTION user_running_limit(who text) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN own.user_id IS NOT NULL THEN own.max_running ELSE star.max_running END
    FROM (SELECT 1) one
    LEFT JOIN user_limits own ON own.user_id = who
    LEFT JOIN user_limits star ON star.user_id = '*'
$$;
COMMENT ON FUNCTION user_running_limit(text) IS
  'The running limit of a user: its own user_limits row, else the * row; NULL: none.';

CREATE OR REPLACE FUNCTION user_creation_limit(who text) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN own.user_id IS NOT NULL THEN own.max_created_per_minute ELSE star.max_created_per_minute END
    FROM (SELECT 1) one
    LEFT JOIN user_limits own ON own.user_id = who
    LEFT JOIN user_limits star ON star.user_id = '*'
$$;
COMMENT ON FUNCTION user_creation_limit(text) IS
  'Tasks a user may create per 60 seconds: its own user_limits row, else the * row; NULL: no limit.';

CREATE OR REPLACE FUNCTION claim_tasks(worker text, max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
DECLARE
    settings task_queue_settings;
    free integer := max_tasks;
    limited boolean;
    served text[] := worker_task_types(worker);  -- NULL: a worker that published nothing claims any type
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
              AND (served IS NULL OR c.task_type = ANY (served))
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
              AND (served IS NULL OR c.task_type = ANY (served))
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
  'Worker claim: up to max_tasks pending tasks (priority, then age; run_at due; not waiting), under is_active, max_concurrent_tasks, and the per-user (user_limits) and per-type (task_type_limits) running limits. Only types the worker serves (task_type_workers). Sets processing, worker_id, attempt + 1 and the lease.';

CREATE OR REPLACE FUNCTION complete_and_claim(task_ids text[], claimed_attempts integer[], results jsonb[],
                                              worker text, max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
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
    -- deadlock), and what to claim (a SELECT fires no trigger); then change everything in one UPDATE over a
    -- plain list, a form in which rows changed meanwhile are re-checked correctly (EvalPlanQual).
    IF n_done > 0 THEN
        PERFORM FROM background_tasks WHERE id = ANY (task_ids) ORDER BY id FOR UPDATE;
    END IF;
    SELECT array_agg(c.id) INTO picked FROM (
        SELECT c.id FROM background_tasks c
        WHERE c.status = 'pending' AND c.waiting_for = 0 AND c.run_at <= now()
              AND (served IS NULL OR c.task_type = ANY (served))
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT max_tasks
        FOR UPDATE SKIP LOCKED
    ) c;
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
COMMENT ON FUNCTION complete_and_claim(text[], integer[], jsonb[], text, integer, double precision) IS
  'Worker: complete its finished tasks and claim up to max_tasks, in one transaction (one statement when no limit applies). Claims only types the worker serves (task_type_workers). Returns the claimed tasks.';

DROP FUNCTION lock_tasks_to_claim(integer, boolean, text[]);
DROP INDEX background_tasks_queue_by_user_idx;
DROP FUNCTION user_limits_for(text);
DELETE FROM user_limits WHERE user_id = '*' AND max_running IS NULL AND max_streams IS NULL;
ALTER TABLE user_limits DROP COLUMN max_schedules, DROP COLUMN min_schedule_period_s;
COMMENT ON TABLE user_limits IS 'Per-user limits; the row with user_id ''*'' is the default for users without a row of their own. NULL: no limit.';
COMMENT ON COLUMN user_limits.user_id IS 'The user, or * for everyone without a row.';
COMMENT ON COLUMN user_limits.max_running IS 'Most of this user''s tasks processing at once.';
COMMENT ON COLUMN user_limits.max_created_per_minute IS 'Most tasks this user may create in any 60 seconds (HTTP 429 beyond).';
