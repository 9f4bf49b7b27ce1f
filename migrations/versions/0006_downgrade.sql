-- Back to 0011: processing rows need no lease, and a move to processing gets none by itself.
ALTER TABLE background_tasks DROP CONSTRAINT background_tasks_processing_has_lease;

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
        END IF;
    END IF;
    NEW.change_seq := nextval('background_task_changes');
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON TRIGGER background_tasks_before_change ON background_tasks IS
  'Refuses illegal status moves (SQLSTATE BG409), stamps updated_at, completed_at and change_seq. Lease heartbeats do not fire it.';
COMMENT ON COLUMN background_tasks.worker_id IS 'The worker that holds (or last held) the task: host:pid:nonce, see bgtasks_workers.';
COMMENT ON COLUMN background_tasks.lease_expires_at IS 'While processing: the worker''s heartbeat keeps pushing this forward; once past, any worker takes the task back.';

-- Schedule names global again (fails, naming the duplicate, if two owners use the same name).
DROP INDEX background_tasks_schedule_due;
CREATE UNIQUE INDEX background_tasks_schedule_due ON background_tasks (schedule_name, scheduled_for)
    WHERE schedule_name IS NOT NULL;
COMMENT ON INDEX background_tasks_schedule_due IS 'Exactly one task per schedule and due time, whatever the number of workers.';
ALTER TABLE task_schedules DROP CONSTRAINT task_schedules_pkey;
ALTER TABLE task_schedules ADD CONSTRAINT task_schedules_pkey PRIMARY KEY (name);
COMMENT ON COLUMN task_schedules.name IS 'Schedule name (unique).';
COMMENT ON COLUMN background_tasks.schedule_name IS 'The schedule (task_schedules.name) that created it, if any.';
