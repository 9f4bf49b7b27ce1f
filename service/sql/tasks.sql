-- Tasks as the API and the Python client see them: create, read, list, change, delete, count.
--
-- The list queries share one filter, the fragment task_filter ($1-$7, written once below and placed where a
-- query says {{task_filter}}), and one row shape, task_page ($11); then the cursor ($8 sort key, $9 id, both
-- NULL for the first page) and the page size $10. One query per sort order, so each can use its index.
-- Bulk operations take the same filter ($1-$7), optional ids $8 (NULL: every match), at most $9 rows per call.

-- fragment: task_filter
-- The list filter (follows WHERE; the task is t): owner $1 (NULL: everyone's), statuses $2, types $3,
-- project $4, created at or after $5 and before $6, label or description ILIKE $7 (NULL: no condition).
($1::text IS NULL OR t.user_id = $1)
  AND ($2::task_status[] IS NULL OR t.status = ANY ($2::task_status[]))
  AND ($3::text[] IS NULL OR t.task_type = ANY ($3::text[]))
  AND ($4::text IS NULL OR t.project_id = $4)
  AND ($5::timestamptz IS NULL OR t.created_at >= $5)
  AND ($6::timestamptz IS NULL OR t.created_at < $6)
  AND ($7::text IS NULL OR t.label ILIKE $7 OR t.description ILIKE $7)

-- fragment: task_page
-- A listed task (t): results larger than $11 bytes as JSON are replaced by task_result_preview() and flagged
-- result_truncated (NULL: whole results); pending rows carry task_waiting_reason() as waiting_reason.
SELECT r.*, s.result_truncated,
       CASE WHEN t.status = 'pending' THEN task_waiting_reason(t) END AS waiting_reason  -- pending rows only
FROM background_tasks t
CROSS JOIN LATERAL (SELECT $11::integer IS NOT NULL AND t.result_data IS NOT NULL
                           AND CASE WHEN pg_column_size(t.result_data) > $11 THEN true
                                    ELSE octet_length(t.result_data::text) > $11 END AS result_truncated) s
CROSS JOIN LATERAL (SELECT CASE WHEN s.result_truncated THEN task_result_preview(t.result_data) END AS preview) p
CROSS JOIN LATERAL jsonb_populate_record(t, CASE WHEN s.result_truncated
    THEN jsonb_build_object('result_data', p.preview, 'result', p.preview) ELSE '{}'::jsonb END) r

-- name: create_tasks
-- Create tasks from a JSON array of specs ($1) in one statement; a repeated idempotency key returns the first
-- (is_new false). The per-user creation rate limit is checked first, in the same statement (SQLSTATE BG429).
WITH spec AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS s(
        task_type text, user_id text, priority integer, max_retries integer, project_id text,
        project_name text, project_path text, label text, description text, payload jsonb,
        run_at timestamptz, idempotency_key text, schedule_name text, scheduled_for timestamptz)
), rate_checked AS (
    -- Users in a fixed order: check_creation_rate takes a per-user lock until commit.
    SELECT count(*) AS users FROM (
        SELECT check_creation_rate(user_id, count(*)::integer) FROM spec
        WHERE schedule_name IS NULL GROUP BY user_id ORDER BY user_id) checked
), inserted AS (
    INSERT INTO background_tasks (task_type, user_id, priority, max_retries, project_id, project_name,
                                  project_path, label, description, payload, run_at, idempotency_key,
                                  schedule_name, scheduled_for)
    SELECT task_type, user_id, coalesce(priority, 0), coalesce(max_retries, 3), project_id, project_name,
           project_path, label, description, coalesce(payload, '{}'::jsonb), coalesce(run_at, now()),
           idempotency_key, schedule_name, scheduled_for
    FROM spec, rate_checked
    ON CONFLICT DO NOTHING
    RETURNING *
)
SELECT *, true AS is_new FROM inserted
UNION ALL
SELECT t.*, false FROM background_tasks t JOIN spec s
  ON t.user_id = s.user_id AND t.idempotency_key = s.idempotency_key
WHERE s.idempotency_key IS NOT NULL AND NOT EXISTS (SELECT FROM inserted i WHERE i.id = t.id);

-- name: get_task
-- One task by id.
SELECT * FROM background_tasks WHERE id = $1;

-- name: list_tasks_created_desc
-- A page of the visible tasks matching the filter, newest first (ties by id), after the cursor. Rows as task_page.
{{task_page}}
WHERE {{task_filter}}
  AND ($8::timestamptz IS NULL OR (t.created_at, t.id) < ($8::timestamptz, $9::text))
ORDER BY t.created_at DESC, t.id DESC
LIMIT $10;

-- name: list_tasks_created_asc
-- A page of the visible tasks matching the filter, oldest first (ties by id), after the cursor. Rows as task_page.
{{task_page}}
WHERE {{task_filter}}
  AND ($8::timestamptz IS NULL OR (t.created_at, t.id) > ($8::timestamptz, $9::text))
ORDER BY t.created_at ASC, t.id ASC
LIMIT $10;

-- name: list_tasks_updated_desc
-- A page of the visible tasks matching the filter, most recently changed first (ties by id), after the cursor. Rows as task_page.
{{task_page}}
WHERE {{task_filter}}
  AND ($8::timestamptz IS NULL OR (t.updated_at, t.id) < ($8::timestamptz, $9::text))
ORDER BY t.updated_at DESC, t.id DESC
LIMIT $10;

-- name: list_tasks_updated_asc
-- A page of the visible tasks matching the filter, least recently changed first (ties by id), after the cursor. Rows as task_page.
{{task_page}}
WHERE {{task_filter}}
  AND ($8::timestamptz IS NULL OR (t.updated_at, t.id) > ($8::timestamptz, $9::text))
ORDER BY t.updated_at ASC, t.id ASC
LIMIT $10;

-- name: list_tasks_priority_desc
-- A page of the visible tasks matching the filter, highest priority first (ties by id), after the cursor. Rows as task_page.
{{task_page}}
WHERE {{task_filter}}
  AND ($8::integer IS NULL OR (t.priority, t.id) < ($8::integer, $9::text))
ORDER BY t.priority DESC, t.id DESC
LIMIT $10;

-- name: list_tasks_priority_asc
-- A page of the visible tasks matching the filter, lowest priority first (ties by id), after the cursor. Rows as task_page.
{{task_page}}
WHERE {{task_filter}}
  AND ($8::integer IS NULL OR (t.priority, t.id) > ($8::integer, $9::text))
ORDER BY t.priority ASC, t.id ASC
LIMIT $10;


-- name: cancel_tasks_matching
-- Cancel the matching pending or processing tasks (reason $10) in one statement; returns their ids.
UPDATE background_tasks b SET status = 'cancelled', cancel_reason = $10,
                              error_message = coalesce(b.error_message, $10)
FROM (
    SELECT t.id FROM background_tasks t
    WHERE {{task_filter}}
      AND ($8::text[] IS NULL OR t.id = ANY ($8::text[]))
      AND t.status IN ('pending', 'processing')
    ORDER BY t.id LIMIT $9
    FOR UPDATE
) m
WHERE b.id = m.id AND b.status IN ('pending', 'processing')
RETURNING b.id;

-- name: retry_tasks_matching
-- Send the matching error or cancelled tasks round again (as retry_task does) in one statement; returns ids.
UPDATE background_tasks b SET status = 'pending', retry_count = 0, run_at = now(), progress = 0,
                              error_message = NULL, cancel_reason = NULL, result_data = NULL, worker_id = NULL
FROM (
    SELECT t.id FROM background_tasks t
    WHERE {{task_filter}}
      AND ($8::text[] IS NULL OR t.id = ANY ($8::text[]))
      AND t.status IN ('error', 'cancelled')
    ORDER BY t.id LIMIT $9
    FOR UPDATE
) m
WHERE b.id = m.id AND b.status IN ('error', 'cancelled')
RETURNING b.id;

-- name: delete_tasks_matching
-- Delete the matching tasks, whatever their status, in one statement; returns their ids.
DELETE FROM background_tasks b
USING (
    SELECT t.id FROM background_tasks t
    WHERE {{task_filter}}
      AND ($8::text[] IS NULL OR t.id = ANY ($8::text[]))
    ORDER BY t.id LIMIT $9
    FOR UPDATE
) m
WHERE b.id = m.id
RETURNING b.id;

-- name: get_visible_task
-- Task $1 if the caller may see it: owner $2, or NULL for a superuser.
SELECT * FROM background_tasks WHERE id = $1 AND ($2::text IS NULL OR user_id = $2);

-- name: visible_task_ids
-- Which of the task ids $1 (text[]) the caller may see: owner $2, or NULL for a superuser.
SELECT id FROM background_tasks WHERE id = ANY ($1::text[]) AND ($2::text IS NULL OR user_id = $2);

-- name: get_task_by_idempotency_key
-- The task user $1 created with Idempotency-Key $2 (after a concurrent create won the race).
SELECT * FROM background_tasks WHERE user_id = $1 AND idempotency_key = $2;

-- name: cancel_visible_task
-- cancel_task() on task $1 if owner $2 (NULL: superuser) may see it; no row: not visible. Raises BG409.
SELECT c.* FROM background_tasks t, LATERAL cancel_task(t.id, $3) c
WHERE t.id = $1 AND ($2::text IS NULL OR t.user_id = $2);

-- name: retry_visible_task
-- retry_task() on task $1 if owner $2 (NULL: superuser) may see it; no row: not visible. Raises BG409.
SELECT r.* FROM background_tasks t, LATERAL retry_task(t.id) r
WHERE t.id = $1 AND ($2::text IS NULL OR t.user_id = $2);

-- name: delete_visible_task
-- Delete task $1 if owner $2 (NULL: superuser) may see it; returns the deleted row.
DELETE FROM background_tasks WHERE id = $1 AND ($2::text IS NULL OR user_id = $2) RETURNING *;

-- name: set_task_status
-- A status update of visible task $1 (owner $2; seed one's PUT, the resource PATCH): status $3 (NULL keeps it);
-- error message $5 when $4; result $7 when $6; progress $10 and description $11 (NULL keeps each). Moving to
-- processing makes holder $8 take a new attempt with a lease of $9 seconds, as a claim does; an update of a
-- processing task by its holder extends the lease. The BEFORE trigger refuses an illegal move with BG409.
UPDATE background_tasks SET
    status = coalesce($3::task_status, status),
    error_message = CASE WHEN $4::boolean THEN $5::text ELSE error_message END,
    result_data = CASE WHEN $6::boolean THEN $7::jsonb ELSE result_data END,
    progress = coalesce($10::integer, progress),
    description = coalesce($11::text, description),
    started_at = CASE WHEN $3::task_status = 'processing' AND status <> 'processing' THEN now()
                      ELSE started_at END,
    attempt = CASE WHEN $3::task_status = 'processing' AND status <> 'processing' THEN attempt + 1
                   ELSE attempt END,
    worker_id = CASE WHEN $3::task_status = 'processing' AND status <> 'processing' THEN $8::text
                     ELSE worker_id END,
    lease_expires_at = CASE WHEN coalesce($3::task_status, status) = 'processing'
                                 AND (status <> 'processing' OR worker_id = $8::text)
                            THEN now() + make_interval(secs => $9::float8)
                            ELSE lease_expires_at END
WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
RETURNING *;

-- name: clear_completed_tasks
-- Delete the visible (owner $1, NULL: all) completed tasks, optionally of project $2; returns how many.
WITH gone AS (
    DELETE FROM background_tasks
    WHERE status = 'completed' AND ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR project_id = $2)
    RETURNING 1)
SELECT count(*) AS n FROM gone;

-- name: count_tasks_by_status
-- Tasks by status from the trigger-kept task_counts (never a scan): owner $1 (NULL: all), types $2.
SELECT status::text AS status, sum(n)::bigint AS n FROM task_counts
WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text[] IS NULL OR task_type = ANY ($2::text[]))
GROUP BY status;

-- name: count_tasks_matching
-- Tasks by status under the list filter ($1-$7; the store passes no statuses $2: the counts are per status),
-- scanning at most $8 rows: the totals of a search, where task_counts (owner and types only) cannot answer.
SELECT m.status::text AS status, count(*)::bigint AS n
FROM (SELECT t.status FROM background_tasks t WHERE {{task_filter}} LIMIT $8) m
GROUP BY m.status;

-- name: task_attempts
-- Every failed attempt of task $1, oldest first: error, its traceback, worker, what followed.
SELECT attempt, worker_id, error_type, error_message, traceback, outcome, started_at, failed_at
FROM task_attempt_errors WHERE task_id = $1 ORDER BY id;

-- name: task_waiting_and_links
-- Task $1's waiting reason (task_waiting_reason(): NULL unless pending), the tasks it depends on and the
-- tasks that depend on it ([{"id", "status", "taskType", "label"}], oldest first).
SELECT task_waiting_reason(t) AS waiting_reason,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', b.id, 'status', b.status, 'taskType', b.task_type,
                                                     'label', b.label) ORDER BY b.created_at, b.id), '[]')
        FROM task_dependencies d JOIN background_tasks b ON b.id = d.depends_on WHERE d.task_id = t.id) AS upstream,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', b.id, 'status', b.status, 'taskType', b.task_type,
                                                     'label', b.label) ORDER BY b.created_at, b.id), '[]')
        FROM task_dependencies d JOIN background_tasks b ON b.id = d.task_id WHERE d.depends_on = t.id) AS downstream
FROM background_tasks t WHERE t.id = $1;
