-- Published task types (migration 0010): workers publish what they serve, the API and enqueue() read it.

-- name: publish_task_types
-- Worker $1 publishes the task types it serves ($2: a JSON array of their definitions); returns how many.
SELECT publish_task_types($1, $2::text::jsonb) AS n;

-- name: list_task_types
-- Every published task type with the live workers that serve it (how many, and their ids), by name.
SELECT t.name, t.description, t.payload_schema::text AS payload_schema, t.result_schema::text AS result_schema,
       t.max_retries, t.time_limit_s, t.needs_project, t.diagnostic, t.handler, t.published_by, t.published_at,
       t.live_workers,
       ARRAY(SELECT w.worker_id FROM task_type_workers s JOIN bgtasks_workers w USING (worker_id)
             WHERE s.task_type = t.name AND w.stopped_at IS NULL AND w.heartbeat_at >= now() - worker_stale_after()
             ORDER BY w.worker_id) AS live_worker_ids
FROM task_types_served t;

-- name: published_task_type
-- The published definition of task type $1 (its payload schema as JSON text), or no row.
SELECT payload_schema::text AS payload_schema, max_retries FROM task_types WHERE name = $1;

-- name: enqueue_one
-- Create one task ($1 type, $2 owner, $3 payload as JSON text, then priority, max_retries, label, description,
-- run_at, idempotency key) in the caller's transaction; returns its id.
SELECT id FROM enqueue_task($1, $2, $3::text::jsonb, priority => $4, max_retries => $5, label => $6,
                            description => $7, run_at => $8, idempotency_key => $9);
