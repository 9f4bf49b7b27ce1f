-- Task types live in the application's code, on the workers' path; an API process does not import it. Each
-- worker publishes the types it serves when it starts, and the API validates payloads, lists types and builds
-- the dashboard's create form from here.

CREATE TABLE task_types (
    name           text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
    description    text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    payload_schema jsonb NOT NULL DEFAULT '{"type": "object"}' CHECK (jsonb_typeof(payload_schema) = 'object'),
    result_schema  jsonb CHECK (result_schema IS NULL OR jsonb_typeof(result_schema) = 'object'),
    max_retries    integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 100),
    time_limit_s   double precision NOT NULL DEFAULT 900 CHECK (time_limit_s > 0),
    needs_project  boolean NOT NULL DEFAULT false,
    diagnostic     boolean NOT NULL DEFAULT false,
    handler        text NOT NULL,
    published_by   text NOT NULL,
    published_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE task_types IS 'Task types as the workers serving them published them (the latest publisher wins); the API validates new tasks against payload_schema.';
COMMENT ON COLUMN task_types.name IS 'The type, as in background_tasks.task_type.';
COMMENT ON COLUMN task_types.description IS 'One line for people: the dashboard and `bgtasks types` show it.';
COMMENT ON COLUMN task_types.payload_schema IS 'JSON Schema (2020-12) every new task''s payload must match.';
COMMENT ON COLUMN task_types.result_schema IS 'JSON Schema of what the function returns, when its annotation says; NULL: not declared.';
COMMENT ON COLUMN task_types.max_retries IS 'Retries a new task gets unless its creator says otherwise.';
COMMENT ON COLUMN task_types.time_limit_s IS 'Seconds one attempt may run before the worker stops it.';
COMMENT ON COLUMN task_types.needs_project IS 'Seed one''s per-project types: projectId, projectName and projectPath are required.';
COMMENT ON COLUMN task_types.diagnostic IS 'A built-in type for checking a deployment (no model involved).';
COMMENT ON COLUMN task_types.handler IS 'module:function that runs it, in the publishing worker.';
COMMENT ON COLUMN task_types.published_by IS 'The worker (bgtasks_workers.worker_id) that published this version.';
COMMENT ON COLUMN task_types.published_at IS 'When that worker published it (at its start).';

CREATE TABLE task_type_workers (
    task_type text NOT NULL REFERENCES task_types (name) ON DELETE CASCADE,
    worker_id text NOT NULL REFERENCES bgtasks_workers (worker_id) ON DELETE CASCADE,
    PRIMARY KEY (task_type, worker_id)
);
CREATE INDEX task_type_workers_worker ON task_type_workers (worker_id);
COMMENT ON TABLE task_type_workers IS 'Which worker serves which task type; whether the worker is live is in bgtasks_workers.';
COMMENT ON COLUMN task_type_workers.task_type IS 'A published type.';
COMMENT ON COLUMN task_type_workers.worker_id IS 'A worker that runs it.';

CREATE FUNCTION publish_task_types(worker text, types jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO task_types AS t (name, description, payload_schema, result_schema, max_retries, time_limit_s,
                                 needs_project, diagnostic, handler, published_by, published_at)
    SELECT e->>'name', coalesce(e->>'description', ''), coalesce(e->'payload_schema', '{"type": "object"}'),
           nullif(e->'result_schema', 'null'::jsonb), coalesce((e->>'max_retries')::integer, 3),
           coalesce((e->>'time_limit_s')::double precision, 900), coalesce((e->>'needs_project')::boolean, false),
           coalesce((e->>'diagnostic')::boolean, false), coalesce(e->>'handler', ''), worker, now()
    FROM jsonb_array_elements(types) AS e
    ON CONFLICT (name) DO UPDATE
        SET description = excluded.description, payload_schema = excluded.payload_schema,
            result_schema = excluded.result_schema, max_retries = excluded.max_retries,
            time_limit_s = excluded.time_limit_s, needs_project = excluded.needs_project,
            diagnostic = excluded.diagnostic, handler = excluded.handler, published_by = excluded.published_by,
            published_at = excluded.published_at;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM task_type_workers w WHERE w.worker_id = publish_task_types.worker;
    INSERT INTO task_type_workers (task_type, worker_id)
    SELECT e->>'name', publish_task_types.worker FROM jsonb_array_elements(types) AS e
    ON CONFLICT DO NOTHING;
    RETURN n;
END
$$;
COMMENT ON FUNCTION publish_task_types(text, jsonb) IS
  'A worker (already in bgtasks_workers) publishes the types it serves: [{"name", "description", "payload_schema", "result_schema", "max_retries", "time_limit_s", "needs_project", "diagnostic", "handler"}, …]; returns how many.';

CREATE VIEW task_types_served AS
SELECT t.name, t.description, t.max_retries, t.time_limit_s, t.published_by, t.published_at,
       count(w.worker_id) FILTER (WHERE w.stopped_at IS NULL AND w.heartbeat_at >= now() - worker_stale_after())
           AS live_workers,
       t.payload_schema, t.result_schema, t.needs_project, t.diagnostic, t.handler
FROM task_types t
LEFT JOIN task_type_workers s ON s.task_type = t.name
LEFT JOIN bgtasks_workers w ON w.worker_id = s.worker_id
GROUP BY t.name
ORDER BY t.name;
COMMENT ON VIEW task_types_served IS 'Published task types with how many live workers serve each (0: tasks of it wait for a worker).';
