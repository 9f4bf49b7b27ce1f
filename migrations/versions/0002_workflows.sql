-- Workflows (seed two's "future improvements"): schedules, dependencies between tasks, per-user and
-- per-type limits.

CREATE TABLE task_schedules (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
    task_type     text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    user_id       text NOT NULL,
    cron          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    enabled       boolean NOT NULL DEFAULT true,
    catch_up      text NOT NULL DEFAULT 'skip' CHECK (catch_up IN ('skip', 'once')),
    priority      integer NOT NULL DEFAULT 0,
    max_retries   integer NOT NULL DEFAULT 3,
    label         text,
    next_run_at   timestamptz,
    last_run_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE task_schedules IS 'Named cron schedules that create tasks on time; exactly one task per due time (unique index on background_tasks).';
COMMENT ON COLUMN task_schedules.name IS 'Schedule name (unique).';
COMMENT ON COLUMN task_schedules.task_type IS 'Type of the tasks it creates.';
COMMENT ON COLUMN task_schedules.payload IS 'Payload of the tasks it creates.';
COMMENT ON COLUMN task_schedules.user_id IS 'Owner of the tasks it creates.';
COMMENT ON COLUMN task_schedules.cron IS 'Cron expression (5 fields, or 6 with seconds first).';
COMMENT ON COLUMN task_schedules.timezone IS 'IANA time zone the cron expression is read in.';
COMMENT ON COLUMN task_schedules.enabled IS 'false: creates nothing.';
COMMENT ON COLUMN task_schedules.catch_up IS 'After downtime: skip (missed times are dropped) or once (one task for all missed times).';
COMMENT ON COLUMN task_schedules.priority IS 'Priority of the tasks it creates.';
COMMENT ON COLUMN task_schedules.max_retries IS 'max_retries of the tasks it creates.';
COMMENT ON COLUMN task_schedules.label IS 'Label of the tasks it creates.';
COMMENT ON COLUMN task_schedules.next_run_at IS 'Next due time.';
COMMENT ON COLUMN task_schedules.last_run_at IS 'Latest due time a task was created for.';
COMMENT ON COLUMN task_schedules.created_at IS 'When it was created.';
COMMENT ON COLUMN task_schedules.updated_at IS 'When it last changed.';

CREATE TABLE task_dependencies (
    task_id    text NOT NULL REFERENCES background_tasks (id) ON DELETE CASCADE,
    depends_on text NOT NULL REFERENCES background_tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, depends_on),
    CHECK (task_id <> depends_on)
);
CREATE INDEX task_dependencies_depends_on_idx ON task_dependencies (depends_on);
COMMENT ON TABLE task_dependencies IS 'task_id waits until depends_on has completed (background_tasks.waiting_for counts the rest).';
COMMENT ON COLUMN task_dependencies.task_id IS 'The waiting task.';
COMMENT ON COLUMN task_dependencies.depends_on IS 'The task it waits for.';

CREATE TABLE user_limits (
    user_id                text PRIMARY KEY,
    max_running            integer CHECK (max_running >= 0),
    max_created_per_minute integer CHECK (max_created_per_minute >= 0),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE user_limits IS 'Per-user limits; the row with user_id ''*'' is the default for users without a row of their own. NULL: no limit.';
COMMENT ON COLUMN user_limits.user_id IS 'The user, or * for everyone without a row.';
COMMENT ON COLUMN user_limits.max_running IS 'Most of this user''s tasks processing at once.';
COMMENT ON COLUMN user_limits.max_created_per_minute IS 'Most tasks this user may create in any 60 seconds (HTTP 429 beyond).';
COMMENT ON COLUMN user_limits.updated_at IS 'When it last changed.';

CREATE TABLE task_type_limits (
    task_type   text PRIMARY KEY,
    max_running integer NOT NULL CHECK (max_running >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE task_type_limits IS 'Per-type concurrency caps over all workers.';
COMMENT ON COLUMN task_type_limits.task_type IS 'The task type.';
COMMENT ON COLUMN task_type_limits.max_running IS 'Most tasks of this type processing at once.';
COMMENT ON COLUMN task_type_limits.updated_at IS 'When it last changed.';
