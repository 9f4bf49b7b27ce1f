-- Only a lease makes a task running: a row that becomes `processing` by anything but a worker's claim (an
-- external processor's PATCH through the API, a plain UPDATE at psql) gets a lease like a claim does, and a
-- processing row without a lease cannot exist, so nothing counts against max_concurrent_tasks (or a per-user
-- or per-type running limit) that the reaper could not take back.

CREATE OR REPLACE FUNCTION background_tasks_before_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT task_transition_allowed(OLD.status, NEW.status) THEN
            RAISE EXCEPTION 'task % is %; it cannot become %', OLD.id, OLD.status, NEW.status
                USING ERRCODE = 'BG409', HINT = 'completed is final; retry an error or cancelled task instead';
        END IF;
        IF NEW.status IN ('completed', 'error', 'cancelled') THEN
            NEW.completed_at := coalesce(NEW.completed_at, now());
            NEW.lease_expires_at := NULL;
            IF NEW.status = 'completed' THEN NEW.progress := 100; END IF;
        ELSIF NEW.status = 'pending' THEN
            NEW.lease_expires_at := NULL;
            NEW.completed_at := NULL;
        ELSIF NEW.status = 'processing' AND NEW.lease_expires_at IS NULL THEN
            -- Not a claim (a claim sets worker, attempt and lease itself): a new attempt, held by whoever
            -- made the change, for the default lease. Nobody extends it: the reaper takes the task back.
            NEW.lease_expires_at := now() + interval '30 seconds';
            IF NEW.started_at IS NOT DISTINCT FROM OLD.started_at THEN NEW.started_at := now(); END IF;
            IF NEW.attempt = OLD.attempt THEN NEW.attempt := OLD.attempt + 1; END IF;
            IF NEW.worker_id IS NOT DISTINCT FROM OLD.worker_id THEN
                NEW.worker_id := 'sql:' || session_user;
            END IF;
        END IF;
    END IF;
    NEW.change_seq := nextval('background_task_changes');
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON TRIGGER background_tasks_before_change ON background_tasks IS
  'Refuses illegal status moves (SQLSTATE BG409), stamps updated_at, completed_at and change_seq; a move to processing that set no lease (not a claim) gets a new attempt held by sql:<role> with a 30-second lease. Lease heartbeats do not fire it.';

-- Rows made processing before this migration without a lease: give them one, so the reaper can take them.
UPDATE background_tasks SET lease_expires_at = now() + interval '30 seconds'
WHERE status = 'processing' AND lease_expires_at IS NULL;

ALTER TABLE background_tasks ADD CONSTRAINT background_tasks_processing_has_lease
    CHECK (status <> 'processing' OR lease_expires_at IS NOT NULL) NOT VALID;
ALTER TABLE background_tasks VALIDATE CONSTRAINT background_tasks_processing_has_lease;
COMMENT ON CONSTRAINT background_tasks_processing_has_lease ON background_tasks IS
  'A processing task always has a lease: whoever holds it extends it, or the reaper takes the task back (reap_expired_leases()).';

COMMENT ON COLUMN background_tasks.worker_id IS
  'Who holds (or last held) the task: a worker (host:pid:nonce, see bgtasks_workers), an external processor (external:<user>, through the API) or sql:<role> (a plain UPDATE).';
COMMENT ON COLUMN background_tasks.lease_expires_at IS
  'While processing (never NULL then): the holder''s heartbeat or progress updates keep pushing this forward; once past, any worker takes the task back.';

-- Schedule names are per owner: two users may both have "nightly", and creating one never tells a user that
-- another user's schedule has that name. The task a schedule creates per due time stays unique per owner.
ALTER TABLE task_schedules DROP CONSTRAINT task_schedules_pkey;
ALTER TABLE task_schedules ADD CONSTRAINT task_schedules_pkey PRIMARY KEY (user_id, name);
COMMENT ON COLUMN task_schedules.name IS 'Schedule name, unique per owner (user_id): two users may each have "nightly".';
DROP INDEX background_tasks_schedule_due;
CREATE UNIQUE INDEX background_tasks_schedule_due ON background_tasks (user_id, schedule_name, scheduled_for)
    WHERE schedule_name IS NOT NULL;
COMMENT ON INDEX background_tasks_schedule_due IS
  'Exactly one task per schedule (owner and name) and due time, whatever the number of workers.';
COMMENT ON COLUMN background_tasks.schedule_name IS
  'The schedule that created it, if any: task_schedules.name of this task''s owner (user_id).';
