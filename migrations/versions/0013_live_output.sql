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

-- Cost: a price table per model, and the cost of every model call stored with its usage.

CREATE TABLE model_prices (
    model                      text PRIMARY KEY CHECK (length(model) BETWEEN 1 AND 200),
    prompt_per_million         numeric(12, 6) NOT NULL CHECK (prompt_per_million >= 0),
    completion_per_million     numeric(12, 6) NOT NULL CHECK (completion_per_million >= 0),
    cached_prompt_per_million  numeric(12, 6) NOT NULL CHECK (cached_prompt_per_million >= 0),
    as_of                      date NOT NULL DEFAULT current_date,
    source                     text NOT NULL DEFAULT 'set by an operator'
);
COMMENT ON TABLE model_prices IS
  'Price per million tokens of each model, in US dollars. A call''s model matches the longest row that is a prefix of it (gpt-4o-mini covers gpt-4o-mini-2024-07-18); an unmatched model''s calls have no cost (NULL). Change prices with INSERT/UPDATE; a new price applies to calls recorded after it.';
COMMENT ON COLUMN model_prices.model IS 'Model name, or the prefix of the names it prices.';
COMMENT ON COLUMN model_prices.prompt_per_million IS 'USD per million prompt tokens not served from the provider''s prompt cache.';
COMMENT ON COLUMN model_prices.completion_per_million IS 'USD per million completion (output) tokens.';
COMMENT ON COLUMN model_prices.cached_prompt_per_million IS 'USD per million prompt tokens served from the provider''s prompt cache.';
COMMENT ON COLUMN model_prices.as_of IS 'When this price was taken from the provider''s price list.';
COMMENT ON COLUMN model_prices.source IS 'Where the price comes from.';

-- Defaults: OpenAI's published list prices for standard (not batch) requests, as of the date in as_of.
INSERT INTO model_prices (model, prompt_per_million, completion_per_million, cached_prompt_per_million, as_of, source)
VALUES ('gpt-4o-mini', 0.15, 0.60, 0.075, '2025-06-01', 'bgtasks default: OpenAI list price'),
       ('gpt-4o', 2.50, 10.00, 1.25, '2025-06-01', 'bgtasks default: OpenAI list price'),
       ('gpt-4.1', 2.00, 8.00, 0.50, '2025-06-01', 'bgtasks default: OpenAI list price'),
       ('gpt-4.1-mini', 0.40, 1.60, 0.10, '2025-06-01', 'bgtasks default: OpenAI list price'),
       ('gpt-4.1-nano', 0.10, 0.40, 0.025, '2025-06-01', 'bgtasks default: OpenAI list price'),
       ('o4-mini', 1.10, 4.40, 0.275, '2025-06-01', 'bgtasks default: OpenAI list price');

ALTER TABLE task_model_calls
    ADD COLUMN cached_prompt_tokens integer NOT NULL DEFAULT 0,
    ADD COLUMN cost_usd numeric(18, 10);
COMMENT ON COLUMN task_model_calls.cached_prompt_tokens IS 'Of the prompt tokens, those the provider served from its prompt cache.';
COMMENT ON COLUMN task_model_calls.cost_usd IS 'What the call cost in US dollars at the model_prices row in force when it was recorded; NULL: the model has no price.';

CREATE FUNCTION model_call_cost(p_model text, p_prompt integer, p_cached integer, p_completion integer)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT ((greatest(p_prompt - p_cached, 0) * prompt_per_million + least(p_cached, p_prompt) * cached_prompt_per_million
             + p_completion * completion_per_million) / 1000000)::numeric(18, 10)
    FROM model_prices
    WHERE p_model = model OR p_model LIKE replace(replace(model, '\', '\\'), '%', '\%') || '%'
    ORDER BY length(model) DESC
    LIMIT 1
$$;
COMMENT ON FUNCTION model_call_cost(text, integer, integer, integer) IS
  'Cost in USD of a call of model p_model with these prompt, cached prompt and completion tokens, at the longest matching model_prices row; NULL without one.';

-- An optional spending cap per user and day (UTC): past it, the user's tasks make no new model calls.
ALTER TABLE user_limits ADD COLUMN max_cost_usd_per_day numeric(12, 4) CHECK (max_cost_usd_per_day >= 0);
COMMENT ON COLUMN user_limits.max_cost_usd_per_day IS
  'Most this user''s model calls may cost per UTC day, in US dollars (task_model_calls.cost_usd); past it, a new model call fails its task with a clear error. NULL: no cap.';
CREATE INDEX task_model_calls_user_idx ON task_model_calls (user_id, created_at);

CREATE FUNCTION user_spending_today(who text) RETURNS TABLE (cap_usd numeric, spent_usd numeric)
LANGUAGE sql STABLE AS $$
    WITH cap AS (
        SELECT coalesce((SELECT max_cost_usd_per_day FROM user_limits WHERE user_id = who),
                        (SELECT max_cost_usd_per_day FROM user_limits WHERE user_id = '*')) AS usd)
    SELECT cap.usd,
           CASE WHEN cap.usd IS NULL THEN NULL ELSE
               (SELECT coalesce(sum(cost_usd), 0) FROM task_model_calls
                WHERE user_id = who AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
           END
    FROM cap
$$;
COMMENT ON FUNCTION user_spending_today(text) IS
  'A user''s daily spending cap (own user_limits row, else the * row; NULL: none) and what their model calls cost since 00:00 UTC (NULL without a cap).';
