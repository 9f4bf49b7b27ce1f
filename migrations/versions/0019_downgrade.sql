-- Back to 0020: the claim condition written out again where 0008 and 0003 wrote it, the index under its
-- 0008 name and comment, and no claimable_tasks view.

CREATE OR REPLACE FUNCTION lock_tasks_to_claim(max_tasks integer, limited boolean DEFAULT false, served text[] DEFAULT NULL)
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

CREATE OR REPLACE VIEW queue_health AS
SELECT s.is_active,
       s.max_concurrent_tasks,
       s.poll_interval AS poll_interval_ms,
       (SELECT count(*) FROM background_tasks WHERE status = 'processing') AS running,
       (SELECT count(*) FROM background_tasks WHERE status = 'processing' AND lease_expires_at < now())
           AS stuck,
       (SELECT count(*) FROM background_tasks
        WHERE status = 'pending' AND waiting_for = 0 AND run_at <= now()) AS pending_due,
       (SELECT coalesce(sum(n), 0)::bigint FROM task_counts WHERE status = 'pending') AS pending_total,
       (SELECT now() - min(run_at) FROM background_tasks
        WHERE status = 'pending' AND waiting_for = 0 AND run_at <= now()) AS oldest_due_waiting,
       w.live AS live_workers,
       w.capacity AS live_capacity,
       w.silent AS silent_workers,
       s.last_poll_at,
       now() - s.last_poll_at AS since_last_poll
FROM task_queue_settings s,
     LATERAL (SELECT count(*) FILTER (WHERE heartbeat_at >= now() - worker_stale_after()) AS live,
                     coalesce(sum(concurrency) FILTER (WHERE heartbeat_at >= now() - worker_stale_after()), 0)
                         AS capacity,
                     count(*) FILTER (WHERE heartbeat_at < now() - worker_stale_after()) AS silent
              FROM bgtasks_workers WHERE stopped_at IS NULL) w
WHERE s.id = 1;

DROP VIEW claimable_tasks;

ALTER INDEX background_tasks_claimable_idx RENAME TO background_tasks_queue_by_user_idx;
COMMENT ON INDEX background_tasks_queue_by_user_idx IS
  'Serves the claim: each owner''s claimable rows in their own order (the owners are found by skipping through it).';
