-- Published task types (migration 0010): workers publish what they serve, the API and enqueue() read it.

-- name: publish_task_types
-- Worker $1 publishes the task types it serves ($2: a JSON array of their definitions); returns how many.
SELECT publish_task_types($1, $2::text::jsonb) AS n;

-- name: list_task_types
-- Every published task type with how many live workers serve it, by name.
SELECT name, description, payload_schema::text AS payload_schema, result_schema::text AS result_schema,
       max_retries, time_limit_s, needs_project, diagnostic, handler, published_by, published_at, live_workers
FROM task_types_served;

-- name: published_task_type
-- The published definition of task type $1 (its payload schema as JSON text), or no row.
SELECT payload_schema::text AS payload_schema, max_retries FROM task_types WHERE name = $1;

-- name: enqueue_one
-- Create one task ($1 type, $2 owner, $3 payload as JSON text, then priority, max_retries, label, description,
-- run_at, idempotency key) in the caller's transaction; returns its id.
SELECT id FROM enqueue_task($1, $2, $3::text::jsonb, priority => $4, max_retries => $5, label => $6,
                            description => $7, run_at => $8, idempotency_key => $9);
