-- Back to 0015's claim_tasks(): a further round after any round that claimed fewer than it was asked.

CREATE OR REPLACE FUNCTION claim_tasks(worker text, max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
DECLARE
    settings task_queue_settings;
    free integer := max_tasks;
    limited boolean;
    picked text[];
    n_claimed integer;
    rounds integer := 0;
    served text[] := worker_task_types(worker);  -- NULL: a worker that published nothing claims any type
BEGIN
    SELECT * INTO settings FROM task_queue_settings WHERE id = 1;
    IF NOT FOUND OR NOT settings.is_active OR max_tasks <= 0 THEN
        RETURN;
    END IF;
    limited := EXISTS (SELECT FROM user_limits WHERE max_running IS NOT NULL)
               OR EXISTS (SELECT FROM task_type_limits);
    IF settings.max_concurrent_tasks IS NOT NULL OR limited THEN
        -- Claimers take turns: the running rows counted below (a fresh snapshot per statement) are exact.
        PERFORM pg_advisory_xact_lock(hashtext('bgtasks.claim'));
        SELECT * INTO settings FROM task_queue_settings WHERE id = 1;  -- as of now that we hold the lock
        IF NOT settings.is_active THEN
            RETURN;
        END IF;
        IF settings.max_concurrent_tasks IS NOT NULL THEN
            free := least(free, settings.max_concurrent_tasks
                                - (SELECT count(*) FROM background_tasks WHERE status = 'processing'));
        END IF;
        IF free <= 0 THEN
            RETURN;
        END IF;
    END IF;
    -- Lock first, then update the list in a second statement: its snapshot sees every row the first locked
    -- (a task inserted just before the lock would be invisible to one statement's older snapshot).
    -- Under a per-type limit a round may keep fewer than it locked: an owner's share is taken in priority
    -- order before the rows over a type's room are dropped. Those slots are claimed again at once, in a
    -- further round that sees this round's rows as processing (each statement takes a fresh snapshot, and
    -- our own changes are in it), so the types filled now are skipped and other types take the free slots.
    LOOP
        rounds := rounds + 1;
        SELECT array_agg(p.id) INTO picked FROM lock_tasks_to_claim(free, limited, served) AS p(id);
        EXIT WHEN picked IS NULL;
        RETURN QUERY
        UPDATE background_tasks t
        SET status = 'processing', worker_id = worker, attempt = t.attempt + 1, started_at = now(),
            lease_expires_at = now() + make_interval(secs => lease_seconds)
        WHERE t.id = ANY (picked)
        RETURNING t.*;
        GET DIAGNOSTICS n_claimed = ROW_COUNT;
        free := free - n_claimed;
        -- Without limits a round keeps all it locks; with them, each further round fills at least one more
        -- type, so a few rounds suffice (bounded for a table of many limited types).
        EXIT WHEN free <= 0 OR NOT limited OR n_claimed = 0 OR rounds >= 4;
    END LOOP;
END
$$;
COMMENT ON FUNCTION claim_tasks(text, integer, double precision) IS
  'Worker claim: up to max_tasks pending tasks (due, not waiting), fair across owners (lock_tasks_to_claim), under is_active, max_concurrent_tasks, and the per-user (user_limits) and per-type (task_type_limits) running limits. Only types the worker serves (task_type_workers). Sets processing, worker_id, attempt + 1 and the lease. Slots a round left empty because a type reached its limit are claimed again at once, for other types (up to 4 rounds).';
