-- Live partial output of running tasks: what a streaming model call has produced so far, in chunks, so a
-- subscriber that connects late or reconnects reads it from here; NOTIFY carries only a pointer to a chunk.

CREATE TABLE task_output (
    task_id    text NOT NULL REFERENCES background_tasks (id) ON DELETE CASCADE,
    seq        bigint NOT NULL DEFAULT nextval('background_task_changes'),
    attempt    integer NOT NULL,
    chunk      text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
);
CREATE INDEX task_output_seq_idx ON task_output (seq);
COMMENT ON TABLE task_output IS
  'Partial output of running tasks (a streaming model call''s text so far), one row per coalesced write (about ten a second at most). Bounded per task by append_task_output(); removed when the task leaves processing: the result is the durable record.';
COMMENT ON COLUMN task_output.task_id IS 'The task whose output this is.';
COMMENT ON COLUMN task_output.seq IS 'Change number (from background_task_changes, like background_tasks.change_seq): the SSE event id of the output event.';
COMMENT ON COLUMN task_output.attempt IS 'The attempt that wrote it; a new attempt''s first write removes an older attempt''s output.';
COMMENT ON COLUMN task_output.chunk IS 'The text produced since the previous chunk.';
COMMENT ON COLUMN task_output.written_at IS 'When the chunk was written.';

CREATE FUNCTION append_task_output(p_task text, p_attempt integer, p_text text, p_max_chars integer)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    used bigint;
    kept text;
    n bigint;
BEGIN
    -- Only the attempt holding the task writes (a cancelled, reaped or finished task takes no more output).
    PERFORM 1 FROM background_tasks WHERE id = p_task AND attempt = p_attempt AND status = 'processing';
    IF NOT FOUND OR p_text = '' THEN
        RETURN NULL;
    END IF;
    DELETE FROM task_output WHERE task_id = p_task AND attempt < p_attempt;
    SELECT coalesce(sum(length(chunk)), 0) INTO used FROM task_output WHERE task_id = p_task;
    kept := left(p_text, greatest(0, p_max_chars - used)::integer);
    IF kept = '' THEN
        RETURN NULL;  -- over the bound: the rest shows in the result
    END IF;
    INSERT INTO task_output (task_id, attempt, chunk) VALUES (p_task, p_attempt, kept) RETURNING seq INTO n;
    PERFORM pg_notify('bgtasks_output', json_build_object('id', p_task, 'seq', n)::text);
    RETURN n;
END $$;
COMMENT ON FUNCTION append_task_output(text, integer, text, integer) IS
  'Append text to a running task''s partial output (attempt p_attempt must hold it), keeping at most p_max_chars characters per task; NOTIFY bgtasks_output {"id","seq"}. Returns the chunk''s change number, or NULL when nothing was written.';

CREATE FUNCTION task_output_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Cheap when no task streams (the common case): one probe of an empty index.
    IF EXISTS (SELECT 1 FROM task_output) THEN
        DELETE FROM task_output o USING new_rows n WHERE o.task_id = n.id AND n.status <> 'processing';
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION task_output_cleanup() IS
  'Removes the partial output of tasks that left processing (finished, failed, cancelled, handed back).';
CREATE TRIGGER background_tasks_output_cleanup AFTER UPDATE ON background_tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION task_output_cleanup();
