-- Back to the indexes before 0014 (the pg_trgm extension stays: other objects may use it).
DROP INDEX background_tasks_label_search_idx;
DROP INDEX background_tasks_description_search_idx;
DROP INDEX background_tasks_updated_idx;
DROP INDEX background_tasks_user_updated_idx;
DROP INDEX background_tasks_priority_idx;
DROP INDEX background_tasks_user_priority_idx;
DROP INDEX background_tasks_unfinished_idx;
DROP INDEX background_tasks_created_idx;
CREATE INDEX background_tasks_created_idx ON background_tasks (created_at DESC);
COMMENT ON INDEX background_tasks_created_idx IS 'Everyone''s tasks newest first (superuser overview).';
DROP INDEX background_tasks_user_idx;
CREATE INDEX background_tasks_user_idx ON background_tasks (user_id, created_at DESC);
COMMENT ON INDEX background_tasks_user_idx IS 'Per-user listing, newest first.';
