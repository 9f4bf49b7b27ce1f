-- Downgrade of 0005: complete_tasks(), extend_leases() and the statement triggers of an UPDATE as 0001 and
-- 0002 defined them (complete_and_claim() itself is restored from 0004_complete_and_claim.sql). The language
-- of the first two changes, so they are dropped and created again.

CREATE OR REPLACE FUNCTION background_tasks_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION background_tasks_release_dependents() RETURNS trigger LANGUAGE plpgsql AS $$
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

DROP FUNCTION complete_tasks(text[], integer[], jsonb[]);
CREATE FUNCTION complete_tasks(task_ids text[], claimed_attempts integer[], results jsonb[])
RETURNS SETOF text LANGUAGE sql AS $$
    UPDATE background_tasks t SET status = 'completed', result_data = r.result, error_message = NULL
    FROM unnest(task_ids, claimed_attempts, results) AS r(id, attempt, result)
    WHERE t.id = r.id AND t.attempt = r.attempt AND t.status = 'processing'
    RETURNING t.id
$$;
COMMENT ON FUNCTION complete_tasks(text[], integer[], jsonb[]) IS
  'Worker: complete_task for a batch in one statement (one NOTIFY); returns the ids it completed.';

DROP FUNCTION extend_leases(text, text[], double precision);
CREATE FUNCTION extend_leases(worker text, task_ids text[], lease_seconds double precision) RETURNS SETOF text
LANGUAGE sql AS $$
    UPDATE background_tasks SET lease_expires_at = now() + make_interval(secs => lease_seconds)
    WHERE id = ANY (task_ids) AND worker_id = worker AND status = 'processing'
    RETURNING id
$$;
COMMENT ON FUNCTION extend_leases(text, text[], double precision) IS
  'Worker heartbeat: push the leases of its running tasks forward; returns the ids it still holds.';
