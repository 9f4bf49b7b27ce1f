-- Per-user limits (user_limits, migration 0008): what applies to a user, and the rows superusers change.
-- The '*' row holds the defaults; a user's own row overrides them column by column (NULL: the default).

-- name: user_limits_for
-- The limits that apply to user $1 (own row, else the '*' row, column by column; NULL: no limit).
SELECT * FROM user_limits_for($1);

-- name: get_user_limits
-- User $1's own row of user_limits (none: the defaults apply as they are).
SELECT * FROM user_limits WHERE user_id = $1;

-- name: list_user_limits
-- Every row of user_limits, the defaults ('*') first.
SELECT * FROM user_limits ORDER BY user_id <> '*', user_id;

-- name: set_user_limits
-- Set user $1's limits: $2 max_running, $3 max_created_per_minute, $4 max_schedules, $5 min_schedule_period_s,
-- $6 max_streams, each only where its flag in $7 (boolean[5]) is true (NULL sets it back to the default).
INSERT INTO user_limits AS l (user_id, max_running, max_created_per_minute, max_schedules, min_schedule_period_s,
                              max_streams)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id) DO UPDATE SET
    max_running = CASE WHEN ($7::boolean[])[1] THEN excluded.max_running ELSE l.max_running END,
    max_created_per_minute = CASE WHEN ($7::boolean[])[2] THEN excluded.max_created_per_minute
                                  ELSE l.max_created_per_minute END,
    max_schedules = CASE WHEN ($7::boolean[])[3] THEN excluded.max_schedules ELSE l.max_schedules END,
    min_schedule_period_s = CASE WHEN ($7::boolean[])[4] THEN excluded.min_schedule_period_s
                                 ELSE l.min_schedule_period_s END,
    max_streams = CASE WHEN ($7::boolean[])[5] THEN excluded.max_streams ELSE l.max_streams END,
    updated_at = now()
RETURNING *;

-- name: delete_user_limits
-- Remove user $1's own row: the defaults apply to them again. The '*' row is never deleted here.
DELETE FROM user_limits WHERE user_id = $1 AND user_id <> '*' RETURNING *;
