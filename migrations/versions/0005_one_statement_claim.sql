-- A busy worker's round trip in one UPDATE statement: the tasks it finished become completed and the tasks it
-- claims become processing together, so the statement triggers (NOTIFY, counts, dependents) fire once per
-- round trip instead of twice. Under a global, per-user or per-type limit it stays two steps (complete, then
-- claim_tasks(), which must count running tasks after the completions).

CREATE OR REPLACE FUNCTION complete_and_claim(task_ids text[], claimed_attempts integer[], results jsonb[],
                                              worker text, max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
DECLARE
    settings task_queue_settings;
    picked text[];
    n_done integer := coalesce(cardinality(task_ids), 0);
    n_picked integer;
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
  'Worker: complete its finished tasks and claim up to max_tasks, in one transaction (one statement when no limit applies). Returns the claimed tasks.';

-- Rows a worker holds are locked in id order by everything that writes several of them at once, so a
-- heartbeat never deadlocks with a completion of the same worker.
CREATE OR REPLACE FUNCTION complete_tasks(task_ids text[], claimed_attempts integer[], results jsonb[])
RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM background_tasks WHERE id = ANY (task_ids) ORDER BY id FOR UPDATE;
    RETURN QUERY
    UPDATE background_tasks t SET status = 'completed', result_data = r.result, error_message = NULL
    FROM unnest(task_ids, claimed_attempts, results) AS r(id, attempt, result)
    WHERE t.id = r.id AND t.attempt = r.attempt AND t.status = 'processing'
    RETURNING t.id;
END
$$;

CREATE OR REPLACE FUNCTION extend_leases(worker text, task_ids text[], lease_seconds double precision)
RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM background_tasks WHERE id = ANY (task_ids) AND worker_id = worker AND status = 'processing'
    ORDER BY id FOR UPDATE;
    RETURN QUERY
    UPDATE background_tasks SET lease_expires_at = now() + make_interval(secs => lease_seconds)
    WHERE id = ANY (task_ids) AND worker_id = worker AND status = 'processing'
    RETURNING id;
END
$$;

-- The statement triggers of an UPDATE, leaner: one join of old and new rows for the notification and one for
-- the counts (a row leaving a group and entering another is a -1 and a +1 from the same joined row), and a
-- single pg_notify when the entries fit in one payload, which is nearly always.
CREATE OR REPLACE FUNCTION background_tasks_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
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
