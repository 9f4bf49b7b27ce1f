-- GET /metrics from counters kept as tasks finish, not from a scan of the tasks that finished in the window:
-- at 500 finishes a second, the 5-minute window was 150,000 rows read per scrape. The statement triggers add
-- each task that moves to completed, error or cancelled after it ran (or is inserted so, at psql) to a histogram
-- row per 10-second bin of its completed_at, task type, status, metric (run, claim, pickup) and bucket. Bins
-- live in a ring of 64 slots (640 s): a slot is reset when its next bin begins, so the table never grows and
-- needs no cleanup.

CREATE FUNCTION task_metrics_bucket_bounds() RETURNS double precision[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]::double precision[]
$$;
COMMENT ON FUNCTION task_metrics_bucket_bounds() IS
  'Upper bounds (seconds, ascending) of the histogram buckets of task_finish_stats and GET /metrics; bucket i counts values at most bound i (past the last: +Inf).';

CREATE TABLE task_finish_stats (
    slot      smallint NOT NULL,
    bin_start timestamptz NOT NULL,
    task_type text NOT NULL,
    status    task_status NOT NULL,
    metric    text NOT NULL CHECK (metric IN ('run', 'claim', 'pickup')),
    bucket    smallint NOT NULL,
    shard     smallint NOT NULL,
    n         bigint NOT NULL,
    total_s   double precision NOT NULL,
    PRIMARY KEY (slot, task_type, status, metric, bucket, shard)
);
COMMENT ON TABLE task_finish_stats IS
  'Histograms of the tasks that finished recently, kept by the update trigger of background_tasks: per 10-second bin, type, status, metric and bucket. A ring of 64 bins (about 10 minutes); GET /metrics sums the bins of its window: SELECT metric, bucket, sum(n) FROM task_finish_stats WHERE bin_start > now() - interval ''5 minutes'' GROUP BY 1, 2.';
COMMENT ON COLUMN task_finish_stats.slot IS 'Position in the ring (the bin number modulo 64); reused when its next bin begins.';
COMMENT ON COLUMN task_finish_stats.bin_start IS 'Start of the 10-second bin the tasks finished in.';
COMMENT ON COLUMN task_finish_stats.task_type IS 'Task type.';
COMMENT ON COLUMN task_finish_stats.status IS 'How they finished: completed, error or cancelled.';
COMMENT ON COLUMN task_finish_stats.metric IS 'run: claimed to finished; claim: due (run_at) to claimed; pickup: created to claimed (seconds, last attempt).';
COMMENT ON COLUMN task_finish_stats.bucket IS 'Histogram bucket: how many of task_metrics_bucket_bounds() are below the value.';
COMMENT ON COLUMN task_finish_stats.shard IS 'Spreads concurrent finishing sessions over rows; sum over it.';
COMMENT ON COLUMN task_finish_stats.n IS 'Tasks in this bin, group and bucket (this shard).';
COMMENT ON COLUMN task_finish_stats.total_s IS 'Sum of their values, seconds (this shard).';

CREATE FUNCTION task_finish_stats_add(finished background_tasks[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO task_finish_stats AS s (slot, bin_start, task_type, status, metric, bucket, shard, n, total_s)
    SELECT (extract(epoch FROM f.bin)::bigint / 10 % 64)::smallint, f.bin, f.task_type, f.status, m.metric,
           (SELECT count(*) FROM unnest(task_metrics_bucket_bounds()) b WHERE b < m.v)::smallint,
           pg_backend_pid() % 8, count(*), sum(m.v)
    FROM (SELECT t.*, date_bin('10 seconds', t.completed_at, 'epoch') AS bin FROM unnest(finished) t) f
    CROSS JOIN LATERAL (VALUES
        ('run', greatest(extract(epoch FROM f.completed_at - f.started_at), 0)::double precision),
        ('claim', greatest(extract(epoch FROM f.started_at - f.run_at), 0)::double precision),
        ('pickup', greatest(extract(epoch FROM f.started_at - f.created_at), 0)::double precision)) AS m(metric, v)
    WHERE f.status IN ('completed', 'error', 'cancelled') AND f.started_at IS NOT NULL
      AND f.completed_at > now() - interval '630 seconds'  -- older than the ring: in no window
    GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 3, 4, 5, 6
    ON CONFLICT (slot, task_type, status, metric, bucket, shard) DO UPDATE SET
        n = CASE WHEN s.bin_start = excluded.bin_start THEN s.n + excluded.n ELSE excluded.n END,
        total_s = CASE WHEN s.bin_start = excluded.bin_start THEN s.total_s + excluded.total_s
                       ELSE excluded.total_s END,
        bin_start = excluded.bin_start
    WHERE s.bin_start <= excluded.bin_start  -- a late writer never resets a newer bin
$$;
COMMENT ON FUNCTION task_finish_stats_add(background_tasks[]) IS
  'Adds finished tasks (as they are now) to task_finish_stats; the statement triggers of background_tasks call it.';

-- Its own statement trigger beside 0005's, so that one stays as it is (the transition tables are shared).
CREATE FUNCTION background_tasks_after_finish() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    finished background_tasks[] := ARRAY(
        SELECT n::background_tasks FROM new_rows n JOIN old_rows o USING (id)
        WHERE n.status IN ('completed', 'error', 'cancelled') AND n.status <> o.status);
BEGIN
    IF cardinality(finished) > 0 THEN
        PERFORM task_finish_stats_add(finished);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER background_tasks_after_finish AFTER UPDATE ON background_tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION background_tasks_after_finish();
COMMENT ON TRIGGER background_tasks_after_finish ON background_tasks IS
  'Adds the tasks that finished (completed, error, cancelled) to task_finish_stats, for GET /metrics.';
