-- Costs that stay flat as finished tasks pile up: the search (q=, ILIKE on label and description) served by
-- trigram indexes, and every documented sort of GET /api/tasks served by an index in its (key, id) order, for
-- everyone's tasks and per user, so a page is an index range scan whatever the table's size.

-- Trusted since PostgreSQL 13: a database owner without superuser may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX background_tasks_label_search_idx ON background_tasks USING gin (label gin_trgm_ops);
COMMENT ON INDEX background_tasks_label_search_idx IS
  'Search (q=): label ILIKE ''%text%'', by trigrams (pg_trgm).';
CREATE INDEX background_tasks_description_search_idx ON background_tasks USING gin (description gin_trgm_ops);
COMMENT ON INDEX background_tasks_description_search_idx IS
  'Search (q=): description ILIKE ''%text%'', by trigrams (pg_trgm).';

-- The created sorts: (created_at, id) so the cursor's row comparison is an index condition too.
DROP INDEX background_tasks_created_idx;
CREATE INDEX background_tasks_created_idx ON background_tasks (created_at, id);
COMMENT ON INDEX background_tasks_created_idx IS 'Everyone''s tasks by creation time, either direction (sort=±createdAt).';
DROP INDEX background_tasks_user_idx;
CREATE INDEX background_tasks_user_idx ON background_tasks (user_id, created_at, id);
COMMENT ON INDEX background_tasks_user_idx IS 'A user''s tasks by creation time, either direction (sort=±createdAt).';

CREATE INDEX background_tasks_updated_idx ON background_tasks (updated_at, id);
COMMENT ON INDEX background_tasks_updated_idx IS 'Everyone''s tasks by last change, either direction (sort=±updatedAt).';
CREATE INDEX background_tasks_user_updated_idx ON background_tasks (user_id, updated_at, id);
COMMENT ON INDEX background_tasks_user_updated_idx IS 'A user''s tasks by last change, either direction (sort=±updatedAt).';

CREATE INDEX background_tasks_priority_idx ON background_tasks (priority, id);
COMMENT ON INDEX background_tasks_priority_idx IS 'Everyone''s tasks by priority, either direction (sort=±priority).';
CREATE INDEX background_tasks_user_priority_idx ON background_tasks (user_id, priority, id);
COMMENT ON INDEX background_tasks_user_priority_idx IS 'A user''s tasks by priority, either direction (sort=±priority).';

-- A status filter on the live queue (status=pending,processing, any sort) reads the few unfinished rows and
-- sorts them, instead of walking a sort index past every finished task.
CREATE INDEX background_tasks_unfinished_idx ON background_tasks (status) WHERE status IN ('pending', 'processing');
COMMENT ON INDEX background_tasks_unfinished_idx IS
  'The unfinished tasks (pending, processing), for lists filtered to them: a handful among millions finished.';
