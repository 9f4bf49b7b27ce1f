-- Task types live in the application's code, on the workers' path; an API process does not import it. Each
-- worker publishes the types it serves when it starts, and the API validates payloads, lists types and builds
-- the dashboard's create form from here.

CREATE TABLE task_types (
    name           text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
    description    text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    payload_schema jsonb NOT NULL DEFAULT '{"type": "object"}' CHECK (jsonb_typeof(payload_schema) = 'object'),
    result_schema  jsonb CHECK (result_schema IS NULL OR jsonb_typeof(result_schema) = 'object'),
    max_retries    integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 100),
    time_limit_s   double precision NOT NULL DEFAULT 900 CHECK (time_limit_s > 0),
    needs_project  boolean NOT NULL DEFAULT false,
    diagnostic     boolean NOT NULL DEFAULT false,
    handler        text NOT NULL,
    published_by   text NOT NULL,
    published_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE task_types IS 'Task types as the workers serving them published them (the latest publisher wins); the API validates new tasks against payload_schema.';
COMMENT ON COLUMN task_types.name IS 'The type, as in background_tasks.task_type.';
COMMENT ON COLUMN task_types.description IS 'One line for people: the dashboard and `bgtasks types` show it.';
COMMENT ON COLUMN task_types.payload_schema IS 'JSON Schema (2020-12) every new task''s payload must match.';
COMMENT ON COLUMN task_types.result_schema IS 'JSON Schema of what the function returns, when its annotation says; NULL: not declared.';
COMMENT ON COLUMN task_types.max_retries IS 'Retries a new task gets unless its creator says otherwise.';
COMMENT ON COLUMN task_types.time_limit_s IS 'Seconds one attempt may run before the worker stops it.';
COMMENT ON COLUMN task_types.needs_project IS 'Seed one''s per-project types: projectId, projectName and projectPath are required.';
COMMENT ON COLUMN task_types.diagnostic IS 'A built-in type for checking a deployment (no model involved).';
COMMENT ON COLUMN task_types.handler IS 'module:function that runs it, in the publishing worker.';
COMMENT ON COLUMN task_types.published_by IS 'The worker (bgtasks_workers.worker_id) that published this version.';
COMMENT ON COLUMN task_types.published_at IS 'When that worker published it (at its start).';

CREATE TABLE task_type_workers (
    task_type text NOT NULL REFERENCES task_types (name) ON DELETE CASCADE,
    worker_id text NOT NULL REFERENCES bgtasks_workers (worker_id) ON DELETE CASCADE,
    PRIMARY KEY (task_type, worker_id)
);
CREATE INDEX task_type_workers_worker ON task_type_workers (worker_id);
COMMENT ON TABLE task_type_workers IS 'Which worker serves which task type; whether the worker is live is in bgtasks_workers.';
COMMENT ON COLUMN task_type_workers.task_type IS 'A published type.';
COMMENT ON COLUMN task_type_workers.worker_id IS 'A worker that runs it.';

CREATE FUNCTION publish_task_types(worker text, types jsonb) RETURNS integer LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION publish_task_types(text, jsonb) IS
  'A worker (already in bgtasks_workers) publishes the types it serves: [{"name", "description", "payload_schema", "result_schema", "max_retries", "time_limit_s", "needs_project", "diagnostic", "handler"}, …]; returns how many.';

CREATE VIEW task_types_served AS
SELECT t.name, t.description, t.max_retries, t.time_limit_s, t.published_by, t.published_at,
       count(w.worker_id) FILTER (WHERE w.stopped_at IS NULL AND w.heartbeat_at >= now() - worker_stale_after())
           AS live_workers,
       t.payload_schema, t.result_schema, t.needs_project, t.diagnostic, t.handler
FROM task_types t
LEFT JOIN task_type_workers s ON s.task_type = t.name
LEFT JOIN bgtasks_workers w ON w.worker_id = s.worker_id
GROUP BY t.name
ORDER BY t.name;
COMMENT ON VIEW task_types_served IS 'Published task types with how many live workers serve each (0: tasks of it wait for a worker).';

-- A worker claims only the types it serves: a task of a type no live worker serves waits in pending (it is not
-- failed by a worker that cannot run it). claim_tasks() as in 0002 and complete_and_claim() as in 0005, with
-- that one condition added (0010_downgrade.sql restores them).
CREATE FUNCTION worker_task_types(worker text) RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT array_agg(s.task_type) FROM task_type_workers s WHERE s.worker_id = worker
$$;
COMMENT ON FUNCTION worker_task_types(text) IS
  'The task types a worker published that it serves; NULL when it published none (then it claims any type).';

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
