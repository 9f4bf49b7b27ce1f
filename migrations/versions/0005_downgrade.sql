-- Downgrade of 0005: complete_tasks(), extend_leases() and the statement trigger of an UPDATE as 0001
-- defined them (complete_and_claim() itself is restored from 0004_complete_and_claim.sql). The language
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
