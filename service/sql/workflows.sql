-- Workflows: creation rate limit, dependencies and chains, schedules, analytics. State changes go through
-- the SQL functions of migration 0002 (operators at psql call the same ones).

-- name: add_task_dependencies
-- Make pending task $1 wait for tasks $2 (same owner); refuses unknown ids (BG404) and cycles (BG422).
SELECT * FROM add_task_dependencies($1, $2::text[]);

-- name: task_dependencies_of
-- The tasks task $1 depends on, with their status, oldest first.
SELECT b.id, b.status::text AS status FROM task_dependencies d JOIN background_tasks b ON b.id = d.depends_on
WHERE d.task_id = $1 ORDER BY b.created_at, b.id;

-- name: task_upstream_results
-- {"upstream id": result_data} of the completed tasks task $1 depends on.
SELECT task_upstream_results($1) AS results;

-- name: list_schedules
-- Schedules owned by $1 (NULL: everyone's), by name.
SELECT * FROM task_schedules WHERE ($1::text IS NULL OR user_id = $1) ORDER BY name;

-- name: get_schedule
-- Schedule $1 of owner $2 (names are unique per owner).
SELECT * FROM task_schedules WHERE name = $1 AND user_id = $2;

-- name: schedule_owners
-- Who has a schedule named $1 (at most two: a superuser naming no owner needs exactly one).
SELECT user_id FROM task_schedules WHERE name = $1 ORDER BY user_id LIMIT 2;

-- name: create_schedule
-- A new schedule: name $1, type $2, payload $3, owner $4, cron $5, time zone $6, enabled $7, catch-up $8,
-- priority $9, max retries $10, label $11. Returns nothing when the name is taken; SQLSTATE BGLIM when the owner
-- has user_limits.max_schedules already (check_schedule_quota, under a per-user lock).
INSERT INTO task_schedules (name, task_type, payload, user_id, cron, timezone, enabled, catch_up, priority,
                            max_retries, label)
SELECT $1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11
FROM (SELECT check_schedule_quota($4)) AS quota
ON CONFLICT (user_id, name) DO NOTHING
RETURNING *;

-- name: update_schedule
-- Change schedule $1 of owner $2: each of $3-$11 (payload, cron, time zone, enabled, catch-up,
-- priority, max retries, label, task type) when not NULL; $12 true clears the label.
UPDATE task_schedules SET
    payload = coalesce($3::jsonb, payload), cron = coalesce($4, cron), timezone = coalesce($5, timezone),
    enabled = coalesce($6, enabled), catch_up = coalesce($7, catch_up), priority = coalesce($8, priority),
    max_retries = coalesce($9, max_retries),
    label = CASE WHEN $12::boolean THEN NULL ELSE coalesce($10, label) END,
    task_type = coalesce($11, task_type)
WHERE name = $1 AND user_id = $2
RETURNING *;

-- name: delete_schedule
-- Delete schedule $1 of owner $2; the tasks it created stay.
DELETE FROM task_schedules WHERE name = $1 AND user_id = $2 RETURNING *;

-- name: lock_due_schedules
-- Scheduler tick: lock up to $1 enabled schedules that are due (or new) at $2 (NULL: the database's clock, as
-- workers run it; tests pass a time), skipping those another worker holds.
SELECT s.*, coalesce($2::timestamptz, clock_timestamp()) AS db_now FROM task_schedules s
WHERE s.enabled AND (s.next_run_at IS NULL OR s.next_run_at <= coalesce($2::timestamptz, clock_timestamp()))
ORDER BY s.next_run_at NULLS FIRST
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: enqueue_scheduled_tasks
-- Create the tasks of schedule $1 of owner $3 for due times $2 (timestamptz[]); a due time that has its task
-- already is skipped (unique index background_tasks_schedule_due). They count against the owner's creation
-- rate (SQLSTATE BG429 when over). Returns the new ids.
WITH rate_checked AS (
    SELECT count(*) AS n FROM (SELECT check_creation_rate($3, cardinality($2::timestamptz[]))) checked
)
INSERT INTO background_tasks (task_type, user_id, payload, priority, max_retries, label, schedule_name,
                              scheduled_for)
SELECT s.task_type, s.user_id, s.payload, s.priority, s.max_retries, s.label, s.name, due
FROM task_schedules s, unnest($2::timestamptz[]) AS due, rate_checked
WHERE s.name = $1 AND s.user_id = $3
ORDER BY due
ON CONFLICT DO NOTHING
RETURNING id;

-- name: advance_schedule
-- Schedule $1 of owner $4 is next due at $2; $3 (when not NULL) is the latest due time a task was created for
-- (it clears last_error); $5 (when not NULL) says why this tick's due times got no task.
UPDATE task_schedules SET next_run_at = $2, last_run_at = coalesce($3, last_run_at),
    last_error = CASE WHEN $5::text IS NOT NULL THEN $5 WHEN $3 IS NOT NULL THEN NULL ELSE last_error END
WHERE name = $1 AND user_id = $4;

-- name: disable_schedule
-- The scheduler cannot read schedule $1 of owner $3 (bad cron or time zone): disable it, saying why ($2).
UPDATE task_schedules SET enabled = false, last_error = $2, next_run_at = NULL WHERE name = $1 AND user_id = $3;

-- name: task_analytics
-- Per user or type ($3) over tasks created in [$1, $2), of user $4 (NULL: everyone's).
SELECT * FROM task_analytics($1, $2, $3, $4);

-- name: analytics_costs
-- What the model calls made in [$1, $2) cost, in US dollars at model_prices, per user ($3 = 'user') or task type
-- and UTC day, of owner $4 (NULL: everyone's); unpriced calls counted, not priced. From task_model_calls.
SELECT CASE WHEN $3 = 'user' THEN user_id ELSE task_type END AS key,
       (created_at AT TIME ZONE 'UTC')::date AS day,
       coalesce(sum(cost_usd), 0)::float8 AS cost_usd,
       count(*) FILTER (WHERE cost_usd IS NULL)::bigint AS unpriced_calls
FROM task_model_calls
WHERE created_at >= $1 AND created_at < $2 AND ($4::text IS NULL OR user_id = $4)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: task_throughput
-- Tasks that finished in [$1, $2) per bucket ($3: 'minute' or 'hour', UTC), of user $4 (NULL: everyone's):
-- completed, failed (error) and cancelled, by completed_at; every bucket, an empty one as zeros. Reads
-- background_tasks_finished_idx (finished rows of the period only).
WITH buckets AS (
    SELECT generate_series(date_trunc($3, $1::timestamptz, 'UTC'), $2::timestamptz - interval '1 microsecond',
                           ('1 ' || $3)::interval) AS start
), finished AS (
    SELECT date_trunc($3, b.completed_at, 'UTC') AS start,
           count(*) FILTER (WHERE b.status = 'completed') AS completed,
           count(*) FILTER (WHERE b.status = 'error') AS failed,
           count(*) FILTER (WHERE b.status = 'cancelled') AS cancelled
    FROM background_tasks b
    WHERE b.status IN ('completed', 'error', 'cancelled') AND b.completed_at >= $1 AND b.completed_at < $2
      AND ($4::text IS NULL OR b.user_id = $4)
    GROUP BY 1
)
SELECT buckets.start, coalesce(f.completed, 0) AS completed, coalesce(f.failed, 0) AS failed,
       coalesce(f.cancelled, 0) AS cancelled
FROM buckets LEFT JOIN finished f ON f.start = buckets.start
ORDER BY buckets.start;

-- name: run_schedule_now
-- One task of schedule $1 of owner $2 at once, outside its cron: scheduled_for NULL (no due time), so the
-- scheduler's own runs, next_run_at and last_run_at are untouched. Counts against the owner's creation rate
-- (SQLSTATE BG429). Returns the new task; nothing when there is no such schedule.
WITH rate_checked AS (
    SELECT count(*) AS n FROM (SELECT check_creation_rate($2, 1)) checked
)
INSERT INTO background_tasks (task_type, user_id, payload, priority, max_retries, label, schedule_name)
SELECT s.task_type, s.user_id, s.payload, s.priority, s.max_retries, s.label, s.name
FROM task_schedules s, rate_checked
WHERE s.name = $1 AND s.user_id = $2
RETURNING *;
