-- Back to 0001: the workflow tables, functions, triggers and views dropped, and 0001's claim_tasks() and its
-- comment restored as 0001 wrote them (written out here, so the downgrade does not depend on 0001's file).

DROP VIEW IF EXISTS task_analytics_by_type, task_analytics_by_user;
DROP TRIGGER IF EXISTS background_tasks_release_dependents ON background_tasks;
DROP TRIGGER IF EXISTS background_tasks_before_delete ON background_tasks;
DROP INDEX IF EXISTS background_tasks_schedule_idx;
DROP TABLE IF EXISTS task_type_limits, user_limits, task_dependencies, task_schedules CASCADE;
DROP FUNCTION IF EXISTS task_analytics(timestamptz, timestamptz, text, text),
    check_creation_rate(text, integer), user_running_limit(text), user_creation_limit(text),
    task_upstream_results(text), add_task_dependencies(text, text[]),
    background_tasks_before_delete(), background_tasks_release_dependents(),
    cancel_downstream(text[], text[]), task_downstream(text[]), task_schedules_before_change();

CREATE OR REPLACE FUNCTION claim_tasks(worker text, max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
DECLARE
    settings task_queue_settings;
    free integer := max_tasks;
BEGIN
    SELECT * INTO settings FROM task_queue_settings WHERE id = 1;
    IF NOT FOUND OR NOT settings.is_active OR max_tasks <= 0 THEN
        RETURN;
    END IF;
    IF settings.max_concurrent_tasks IS NOT NULL THEN
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
    RETURN QUERY
    UPDATE background_tasks t
    SET status = 'processing', worker_id = worker, attempt = t.attempt + 1, started_at = now(),
        lease_expires_at = now() + make_interval(secs => lease_seconds)
    FROM (
        SELECT c.id FROM background_tasks c
        WHERE c.status = 'pending' AND c.waiting_for = 0 AND c.run_at <= now()
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT free
        FOR UPDATE SKIP LOCKED
    ) picked
    WHERE t.id = picked.id
    RETURNING t.*;
END
$$;
COMMENT ON FUNCTION claim_tasks(text, integer, double precision) IS
  'Worker claim: up to max_tasks pending tasks (priority, then age; run_at due; not waiting), under is_active and max_concurrent_tasks. Sets processing, worker_id, attempt + 1 and the lease.';
