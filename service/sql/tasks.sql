-- Tasks as the API and the Python client see them: create, read.

-- name: create_tasks
-- Create tasks from a JSON array of specs ($1) in one statement; a repeated idempotency key returns the first.
WITH spec AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS s(
        task_type text, user_id text, priority integer, max_retries integer, project_id text,
        project_name text, project_path text, label text, description text, payload jsonb,
        run_at timestamptz, idempotency_key text, schedule_name text, scheduled_for timestamptz)
), inserted AS (
    INSERT INTO background_tasks (task_type, user_id, priority, max_retries, project_id, project_name,
                                  project_path, label, description, payload, run_at, idempotency_key,
                                  schedule_name, scheduled_for)
    SELECT task_type, user_id, coalesce(priority, 0), coalesce(max_retries, 3), project_id, project_name,
           project_path, label, description, coalesce(payload, '{}'::jsonb), coalesce(run_at, now()),
           idempotency_key, schedule_name, scheduled_for
    FROM spec
    ON CONFLICT DO NOTHING
    RETURNING *
)
SELECT * FROM inserted
UNION ALL
SELECT t.* FROM background_tasks t JOIN spec s
  ON t.user_id = s.user_id AND t.idempotency_key = s.idempotency_key
WHERE s.idempotency_key IS NOT NULL AND NOT EXISTS (SELECT FROM inserted i WHERE i.id = t.id);

-- name: get_task
-- One task by id.
SELECT * FROM background_tasks WHERE id = $1;
