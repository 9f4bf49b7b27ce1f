-- Worker processes as operators see them (the dashboard's workers view, GET /api/workers): live, silent and
-- recently stopped, with what each runs now and the types it serves.

-- name: list_workers
-- Workers not stopped, and those stopped in the last $1 seconds: state live (heartbeat within
-- worker_stale_after()), silent (no heartbeat since, never stopped: a crash or a cut-off host) or stopped;
-- tasks processing under each now; the types it published (empty: it claims any type). Live, then silent, then stopped (latest first).
SELECT w.worker_id, w.hostname, w.pid, w.concurrency, w.started_at, w.heartbeat_at, w.stopped_at,
       CASE WHEN w.stopped_at IS NOT NULL THEN 'stopped'
            WHEN w.heartbeat_at >= now() - worker_stale_after() THEN 'live'
            ELSE 'silent' END AS state,
       (SELECT count(*) FROM background_tasks t WHERE t.status = 'processing' AND t.worker_id = w.worker_id)
           AS running,
       ARRAY(SELECT s.task_type FROM task_type_workers s WHERE s.worker_id = w.worker_id ORDER BY s.task_type)
           AS task_types,
       extract(epoch FROM now() - w.heartbeat_at)::double precision AS heartbeat_age_s
FROM bgtasks_workers w
WHERE w.stopped_at IS NULL OR w.stopped_at >= now() - make_interval(secs => $1)
ORDER BY (w.stopped_at IS NULL AND w.heartbeat_at >= now() - worker_stale_after()) DESC, w.stopped_at IS NULL DESC,
         w.stopped_at DESC, w.started_at DESC, w.worker_id
LIMIT $2;
