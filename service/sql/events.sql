-- Live updates: what the hub and the event streams read (rows by id, changes since a change number).

-- name: tasks_by_ids
-- The current rows of the given task ids ($1 text[]); missing ids were deleted.
SELECT * FROM background_tasks WHERE id = ANY ($1::text[]);

-- name: tasks_changed_since
-- Rows changed after seq $1, oldest first, at most $6; filters: owner $2, statuses $3, types $4, project $5,
-- ids $7 (a read token's tasks).
SELECT * FROM background_tasks
WHERE change_seq > $1
  AND ($2::text IS NULL OR user_id = $2)
  AND ($3::task_status[] IS NULL OR status = ANY ($3::task_status[]))
  AND ($4::text[] IS NULL OR task_type = ANY ($4::text[]))
  AND ($5::text IS NULL OR project_id = $5)
  AND ($7::text[] IS NULL OR id = ANY ($7::text[]))
ORDER BY change_seq
LIMIT $6;

-- name: max_change_seq
-- The highest change number any task row carries now (0 for an empty table); read from the change_seq index.
SELECT coalesce(max(change_seq), 0) AS seq FROM background_tasks;

-- name: queue_settings_event
-- The queue settings as a live event shows them.
SELECT is_active, poll_interval, max_concurrent_tasks, retry_base_delay_ms, retry_max_delay_ms, updated_at
FROM task_queue_settings WHERE id = 1;

-- name: user_stream_cap
-- The open-stream cap of user $1 in user_limits: its own row's max_streams, else the * row's; NULL: the setting.
SELECT coalesce((SELECT max_streams FROM user_limits WHERE user_id = $1),
                (SELECT max_streams FROM user_limits WHERE user_id = '*')) AS cap;

-- name: task_output_chunks
-- The notified chunks of live output (task ids $1 and change numbers $2, pairwise), oldest first, with the
-- routing fields of their tasks.
SELECT o.task_id AS id, o.seq, o.attempt, o.chunk, t.user_id, t.task_type, t.project_id, t.status, t.change_seq
FROM task_output o JOIN background_tasks t ON t.id = o.task_id
WHERE (o.task_id, o.seq) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
ORDER BY o.seq;

-- name: task_output_since
-- Live output written after change number $1, oldest first, at most $6; filters like tasks_changed_since:
-- owner $2, statuses $3, types $4, project $5, ids $7.
SELECT o.task_id AS id, o.seq, o.attempt, o.chunk, t.user_id, t.task_type, t.project_id, t.status, t.change_seq
FROM task_output o JOIN background_tasks t ON t.id = o.task_id
WHERE o.seq > $1
  AND ($2::text IS NULL OR t.user_id = $2)
  AND ($3::task_status[] IS NULL OR t.status = ANY ($3::task_status[]))
  AND ($4::text[] IS NULL OR t.task_type = ANY ($4::text[]))
  AND ($5::text IS NULL OR t.project_id = $5)
  AND ($7::text[] IS NULL OR o.task_id = ANY ($7::text[]))
ORDER BY o.seq
LIMIT $6;
