DROP TRIGGER background_tasks_after_finish ON background_tasks;
DROP FUNCTION background_tasks_after_finish();
-- Back to 0002's check_creation_rate (counting background_tasks) and 0001's insert and truncate triggers.
CREATE OR REPLACE FUNCTION background_tasks_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notify_in_chunks('bgtasks_tasks', ARRAY(
        SELECT jsonb_build_object('id', id, 'status', status, 'seq', change_seq)::text FROM new_rows));
    INSERT INTO task_counts AS c (user_id, task_type, status, shard, n)
    SELECT user_id, task_type, status, pg_backend_pid() % 16, count(*) FROM new_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, task_type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION background_tasks_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_counts;
    PERFORM pg_notify('bgtasks_tasks', '[{"id":"*","status":"deleted","seq":0}]');
    RETURN NULL;
END
$$;
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
    -- One creator per user at a time, until its transaction ends: the count below then includes every task
    -- the previous creator committed (each plpgsql statement takes a fresh snapshot).
    PERFORM pg_advisory_xact_lock(hashtext('bgtasks.rate:' || who));
    since := clock_timestamp() - interval '60 seconds';
    SELECT count(*) INTO recent FROM background_tasks WHERE user_id = who AND created_at > since;
    over := recent + n_new - lim;
    IF over <= 0 THEN
        RETURN;
    END IF;
    -- Room for n_new comes when the `over` oldest tasks of the window have aged out of it.
    SELECT created_at INTO oldest FROM background_tasks WHERE user_id = who AND created_at > since
    ORDER BY created_at OFFSET over - 1 LIMIT 1;
    wait_s := greatest(1, ceil(extract(epoch FROM oldest + interval '60 seconds' - clock_timestamp()))::integer);
    RAISE EXCEPTION 'rate limit: user % created % tasks in the last minute (limit %); retry in % s',
        who, recent, lim, wait_s
        USING ERRCODE = 'BG429', DETAIL = wait_s::text, HINT = 'Retry-After: ' || wait_s;
END
$$;
COMMENT ON FUNCTION check_creation_rate(text, integer) IS
  'Call before creating n_new tasks for a user, in the same transaction: raises SQLSTATE BG429 (DETAIL: seconds to wait, for Retry-After) when over user_limits.max_created_per_minute.';
COMMENT ON TRIGGER background_tasks_after_insert ON background_tasks IS 'NOTIFY bgtasks_tasks (one per statement) and count.';
COMMENT ON TRIGGER background_tasks_after_truncate ON background_tasks IS 'Reset task_counts.';
CREATE OR REPLACE FUNCTION notify_in_chunks(channel text, entries text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    entry text;
    chunk text := '';
BEGIN
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
DROP TABLE task_creation_counts;
DROP FUNCTION task_finish_stats_add(background_tasks[]);
DROP TABLE task_finish_stats;
DROP FUNCTION task_metrics_bucket_bounds();
