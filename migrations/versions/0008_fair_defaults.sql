-- Default caps and fair claiming (issue 16).
--
-- 1. user_limits holds every per-user limit, with safe defaults in its '*' row; a user's own row overrides
--    column by column (NULL there: the default), so raising one limit for a user keeps the others.
-- 2. Schedules: a per-user cap on their number and a shortest period (checked by the API, which parses cron).
-- 3. Fair claiming: the queue is served round-robin by owner. Priority orders a user's own tasks only, so one
--    user's backlog (or a user-chosen priority of 1000) cannot hold back another user's work.

ALTER TABLE user_limits
    ADD COLUMN max_schedules integer CHECK (max_schedules >= 0),
    ADD COLUMN min_schedule_period_s integer CHECK (min_schedule_period_s >= 1);
COMMENT ON TABLE user_limits IS
  'Per-user limits. The row ''*'' holds the defaults (NULL there: no limit); a user''s own row overrides them column by column (NULL there: the default). Change with SQL, `bgtasks limits set`, or PUT /api/limits/{user}.';
COMMENT ON COLUMN user_limits.user_id IS 'The user, or * for the defaults.';
COMMENT ON COLUMN user_limits.max_running IS 'Most of this user''s tasks processing at once (claims wait beyond).';
COMMENT ON COLUMN user_limits.max_created_per_minute IS 'Most tasks this user may create in any 60 seconds, schedules'' tasks included (HTTP 429 beyond).';
COMMENT ON COLUMN user_limits.max_schedules IS 'Most schedules this user may own (HTTP 409 beyond).';
COMMENT ON COLUMN user_limits.min_schedule_period_s IS 'Shortest time in seconds between two runs of one of this user''s schedules (HTTP 422 below).';

-- The defaults. An existing '*' row keeps what it sets; it gets a creation rate only if it had none.
INSERT INTO user_limits (user_id, max_created_per_minute, max_schedules, min_schedule_period_s)
VALUES ('*', 1000, 20, 60)
ON CONFLICT (user_id) DO UPDATE SET
    max_created_per_minute = coalesce(user_limits.max_created_per_minute, excluded.max_created_per_minute),
    max_schedules = excluded.max_schedules,
    min_schedule_period_s = excluded.min_schedule_period_s,
    updated_at = now();

CREATE FUNCTION user_limits_for(who text)
RETURNS TABLE (max_running integer, max_created_per_minute integer, max_schedules integer,
               min_schedule_period_s integer, max_streams integer)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(own.max_running, star.max_running),
           coalesce(own.max_created_per_minute, star.max_created_per_minute),
           coalesce(own.max_schedules, star.max_schedules),
           coalesce(own.min_schedule_period_s, star.min_schedule_period_s),
           coalesce(own.max_streams, star.max_streams)
    FROM (SELECT 1) one
    LEFT JOIN user_limits own ON own.user_id = who AND who <> '*'
    LEFT JOIN user_limits star ON star.user_id = '*'
$$;
COMMENT ON FUNCTION user_limits_for(text) IS
  'The limits that apply to a user: each column from its own user_limits row, else from the * row; NULL: no limit (max_streams NULL: BGTASKS_MAX_STREAMS_PER_USER).';

CREATE OR REPLACE FUNCTION user_running_limit(who text) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT max_running FROM user_limits_for(who)
$$;
COMMENT ON FUNCTION user_running_limit(text) IS
  'The running limit of a user (user_limits_for); NULL: none.';

CREATE OR REPLACE FUNCTION user_creation_limit(who text) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT max_created_per_minute FROM user_limits_for(who)
$$;
COMMENT ON FUNCTION user_creation_limit(text) IS
  'Tasks a user may create per 60 seconds (user_limits_for); NULL: no limit.';

COMMENT ON COLUMN task_schedules.last_error IS
  'Why the scheduler disabled it (bad cron expression or time zone), or why its latest due time got no task (owner over their creation rate); NULL when fine.';

CREATE INDEX task_schedules_user_idx ON task_schedules (user_id);
COMMENT ON INDEX task_schedules_user_idx IS 'A user''s schedules: listing and the max_schedules count.';

CREATE FUNCTION check_schedule_quota(who text) RETURNS void LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION check_schedule_quota(text) IS
  'Call before creating a schedule for a user, in the same transaction: raises SQLSTATE BGLIM when the user owns max_schedules already.';

-- ---------------------------------------------------------------------------------------------------------
-- Fair claiming.
--
-- Order: each owner's claimable tasks are ranked by priority, then age; a task's turn is its owner's running
-- tasks + its rank, so an owner with nothing running goes first, and owners with equal work take turns. Ties:
-- oldest first. One statement locks, per owner with queued work, at most twice that owner's share of the batch
-- (share: up to the water level, the smallest turn t at which sum(t - running) over the owners below it covers
-- the batch), through an index by owner; it never reads past one owner's backlog to reach another's. What it
-- locks beyond the batch stays pending (the lock ends with the claim's short transaction).

CREATE INDEX background_tasks_queue_by_user_idx ON background_tasks (user_id, priority DESC, run_at, id)
    WHERE status = 'pending' AND waiting_for = 0;
COMMENT ON INDEX background_tasks_queue_by_user_idx IS
  'Serves the claim: each owner''s claimable rows in their own order (the owners are found by skipping through it).';
DROP INDEX background_tasks_claim_idx;

-- The planner cannot know an owner's share (LIMIT s.k) when it plans, and misjudges how many of an owner's
-- rows are queued; it then reads all of them (a seq scan, or the listing index) and sorts. Seq scans, bitmap
-- scans and sorts are off inside this function, so each owner is read through its index in claim order,
-- stopping at its share (the few sorts of small CTEs that remain are unavoidable and stay).
CREATE FUNCTION lock_tasks_to_claim(max_tasks integer, limited boolean DEFAULT false, served text[] DEFAULT NULL)
RETURNS SETOF text LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
AS $$
BEGIN
    -- plpgsql, not sql: its plan is cached per session (a SQL function with SET clauses is planned per call,
    -- which cost more than running it).
    RETURN QUERY
    WITH RECURSIVE owners(user_id) AS (  -- each owner with claimable rows: one index descent per owner
        (SELECT c.user_id FROM background_tasks c WHERE c.status = 'pending' AND c.waiting_for = 0
         ORDER BY c.user_id LIMIT 1)
        UNION ALL
        SELECT (SELECT c.user_id FROM background_tasks c
                WHERE c.status = 'pending' AND c.waiting_for = 0 AND c.user_id > o.user_id
                ORDER BY c.user_id LIMIT 1)
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
            SELECT c.id, c.user_id, c.task_type, c.priority, c.run_at FROM background_tasks c
            WHERE c.user_id = s.user_id AND c.status = 'pending' AND c.waiting_for = 0 AND c.run_at <= now()
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
COMMENT ON FUNCTION lock_tasks_to_claim(integer, boolean, text[]) IS
  'Claim order, fair across owners: locks (FOR UPDATE SKIP LOCKED) and returns up to max_tasks claimable task ids, round-robin by owner (running tasks + rank by priority, then age); limited: also under user_limits.max_running and task_type_limits; served: only these task types (NULL: any). Called by claim_tasks() and complete_and_claim().';

-- Same signature, limits and served types as 0010's; the candidates come from lock_tasks_to_claim().
CREATE OR REPLACE FUNCTION claim_tasks(worker text, max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
DECLARE
    settings task_queue_settings;
    free integer := max_tasks;
    limited boolean;
    picked text[];
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
    SELECT array_agg(p.id) INTO picked FROM lock_tasks_to_claim(free, limited, served) AS p(id);
    IF picked IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE background_tasks t
    SET status = 'processing', worker_id = worker, attempt = t.attempt + 1, started_at = now(),
        lease_expires_at = now() + make_interval(secs => lease_seconds)
    WHERE t.id = ANY (picked)
    RETURNING t.*;
END
$$;
COMMENT ON FUNCTION claim_tasks(text, integer, double precision) IS
  'Worker claim: up to max_tasks pending tasks (due, not waiting), fair across owners (lock_tasks_to_claim), under is_active, max_concurrent_tasks, and the per-user (user_limits) and per-type (task_type_limits) running limits. Only types the worker serves (task_type_workers). Sets processing, worker_id, attempt + 1 and the lease.';

-- 0010's round trip (0005's, for the types the worker serves) with the fair claim order.
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
COMMENT ON FUNCTION complete_and_claim(text[], integer[], jsonb[], text, integer, double precision) IS
  'Worker: complete its finished tasks and claim up to max_tasks, fair across owners, in one transaction (one statement when no limit applies). Claims only types the worker serves (task_type_workers). Returns the claimed tasks.';
