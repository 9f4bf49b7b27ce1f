-- The creation rate limit at a cost that does not grow with the rate. check_creation_rate() used to count the
-- user's tasks of the last 60 seconds in background_tasks on every create, under the user's lock: a user
-- creating 500 tasks a second had each create count up to 30,000 rows. Now the insert trigger adds each
-- statement's new tasks to a counter per user and second, and the check sums at most 60 seconds of them.

CREATE TABLE task_creation_counts (
    user_id text NOT NULL,
    second  timestamptz NOT NULL,
    shard   smallint NOT NULL,
    n       integer NOT NULL,
    PRIMARY KEY (user_id, second, shard)
);
COMMENT ON TABLE task_creation_counts IS
  'Tasks created per user and second over the last minute, kept by the insert trigger of background_tasks (every writer, psql included); check_creation_rate() sums them. Older seconds are deleted as the user creates more.';
COMMENT ON COLUMN task_creation_counts.user_id IS 'Owner of the tasks created.';
COMMENT ON COLUMN task_creation_counts.second IS 'The second they were created in (created_at truncated to the second).';
COMMENT ON COLUMN task_creation_counts.shard IS 'Spreads concurrent inserting sessions over rows; sum over it.';
COMMENT ON COLUMN task_creation_counts.n IS 'Tasks created in this second (this shard).';

-- Tasks created in the last minute before this migration count too.
INSERT INTO task_creation_counts (user_id, second, shard, n)
SELECT user_id, date_trunc('second', created_at), 0, count(*) FROM background_tasks
WHERE created_at > clock_timestamp() - interval '60 seconds'
GROUP BY 1, 2;

-- 0001's notify_in_chunks, with a fast path: entries that fit in one payload (nearly always; a batch of 100
-- new tasks does) are joined at once instead of one concatenation per entry in a plpgsql loop.
CREATE OR REPLACE FUNCTION notify_in_chunks(channel text, entries text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    entry text;
    chunk text := array_to_string(entries, ',');
BEGIN
    IF length(chunk) <= 7000 THEN
        IF chunk <> '' THEN
            PERFORM pg_notify(channel, '[' || chunk || ']');
        END IF;
        RETURN;
    END IF;
    chunk := '';
    FOREACH entry IN ARRAY entries LOOP
        IF length(chunk) + length(entry) > 7000 THEN
            PERFORM pg_notify(channel, '[' || chunk || ']');
            chunk := '';
        END IF;
        chunk := CASE WHEN chunk = '' THEN entry ELSE chunk || ',' || entry END;
    END LOOP;
    IF chunk <> '' THEN
        PERFORM pg_notify(channel, '[' || chunk || ']');
    END IF;
END
$$;

-- 0001's insert trigger function, plus the creation counters. Rows created with an old created_at (an import,
-- bench.scale's fill) are outside every window and are not counted. The statement's users drop their seconds
-- that left the window, so the table holds about a minute of seconds per active user. The entries are built
-- with format(), as 0005's update trigger builds them, not as a jsonb object per row.
CREATE OR REPLACE FUNCTION background_tasks_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    since timestamptz := clock_timestamp() - interval '60 seconds';
BEGIN
    PERFORM notify_in_chunks('bgtasks_tasks', ARRAY(
        SELECT format('{"id":%s,"status":"%s","seq":%s}', to_json(id), status, change_seq) FROM new_rows));
    INSERT INTO task_counts AS c (user_id, task_type, status, shard, n)
    SELECT user_id, task_type, status, pg_backend_pid() % 16, count(*) FROM new_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, task_type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    INSERT INTO task_creation_counts AS c (user_id, second, shard, n)
    SELECT user_id, date_trunc('second', created_at), pg_backend_pid() % 4, count(*) FROM new_rows
    WHERE created_at > since
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (user_id, second, shard) DO UPDATE SET n = c.n + excluded.n;
    DELETE FROM task_creation_counts c
    WHERE c.user_id IN (SELECT DISTINCT user_id FROM new_rows) AND c.second <= since;
    -- Inserted finished within the ring of 0020_finish_stats.sql (psql; an import's old rows are skipped here).
    IF EXISTS (SELECT FROM new_rows WHERE status <> 'pending' AND completed_at > now() - interval '630 seconds') THEN
        PERFORM task_finish_stats_add(ARRAY(SELECT n::background_tasks FROM new_rows n
                                            WHERE n.status <> 'pending' AND n.completed_at > now() - interval '630 seconds'));
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON TRIGGER background_tasks_after_insert ON background_tasks IS
  'NOTIFY bgtasks_tasks (one per statement), count (task_counts), count the creations (task_creation_counts) and add tasks inserted finished to task_finish_stats.';

CREATE OR REPLACE FUNCTION background_tasks_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_counts;
    DELETE FROM task_creation_counts;
    PERFORM pg_notify('bgtasks_tasks', '[{"id":"*","status":"deleted","seq":0}]');
    RETURN NULL;
END
$$;
COMMENT ON TRIGGER background_tasks_after_truncate ON background_tasks IS 'Reset task_counts and task_creation_counts.';

-- Same contract as 0002's: one creator per user at a time (the advisory lock, until commit), so the sum
-- includes every task the previous creator committed. The window is counted to the second: a task counts
-- while the second it was created in began less than 60 seconds ago.
CREATE OR REPLACE FUNCTION check_creation_rate(who text, n_new integer DEFAULT 1) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    lim integer := user_creation_limit(who);
    since timestamptz;
    recent integer;
    over integer;
    oldest timestamptz;
    wait_s integer;
BEGIN
    IF lim IS NULL OR n_new <= 0 THEN
        RETURN;
    END IF;
    IF n_new > lim THEN
        RAISE EXCEPTION 'creating % tasks at once is more than the % per minute allowed for user %', n_new, lim, who
            USING ERRCODE = 'BG429', DETAIL = '60';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('bgtasks.rate:' || who));
    since := clock_timestamp() - interval '60 seconds';
    SELECT coalesce(sum(n), 0) INTO recent FROM task_creation_counts WHERE user_id = who AND second > since;
    over := recent + n_new - lim;
    IF over <= 0 THEN
        RETURN;
    END IF;
    -- Room for n_new comes when the `over` oldest tasks of the window have aged out of it.
    SELECT s.second INTO oldest FROM (
        SELECT c.second, sum(sum(c.n)) OVER (ORDER BY c.second) AS so_far
        FROM task_creation_counts c WHERE c.user_id = who AND c.second > since GROUP BY c.second) s
    WHERE s.so_far >= over ORDER BY s.second LIMIT 1;
    wait_s := greatest(1, ceil(extract(epoch FROM oldest + interval '60 seconds' - clock_timestamp()))::integer);
    RAISE EXCEPTION 'rate limit: user % created % tasks in the last minute (limit %); retry in % s',
        who, recent, lim, wait_s
        USING ERRCODE = 'BG429', DETAIL = wait_s::text, HINT = 'Retry-After: ' || wait_s;
END
$$;
COMMENT ON FUNCTION check_creation_rate(text, integer) IS
  'Call before creating n_new tasks for a user, in the same transaction: raises SQLSTATE BG429 (DETAIL: seconds to wait, for Retry-After) when over user_limits.max_created_per_minute (the sum of task_creation_counts over the last 60 seconds).';
