-- The queue's settings as the API shows and changes them (the one row of task_queue_settings).

-- name: get_queue_settings
-- The queue settings row.
SELECT * FROM task_queue_settings WHERE id = 1;

-- name: update_queue_settings
-- Change the settings given (NULL: keep); max_concurrent_tasks only when $3 (it may be set to NULL = no limit).
UPDATE task_queue_settings SET
    is_active = coalesce($1::boolean, is_active),
    poll_interval = coalesce($2::integer, poll_interval),
    max_concurrent_tasks = CASE WHEN $3::boolean THEN $4::integer ELSE max_concurrent_tasks END,
    retry_base_delay_ms = coalesce($5::integer, retry_base_delay_ms),
    retry_max_delay_ms = coalesce($6::integer, retry_max_delay_ms)
WHERE id = 1
RETURNING *;
