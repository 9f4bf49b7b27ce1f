-- Quiz questions (seed two): written by generation tasks, read and updated by validation and
-- emoji-regeneration. Every read and write names the owner, so a task only ever touches its user's questions;
-- every write is conditional on the task attempt still holding the task (a cancelled or taken-back attempt
-- writes nothing).

-- name: insert_questions
-- Store the questions $6 (JSON array) of task $1 (attempt $2) for user $3, category $4, age group $5 and difficulty $7.
WITH holder AS (
    SELECT id FROM background_tasks WHERE id = $1 AND attempt = $2 AND status = 'processing'
), earlier AS (
    -- A previous attempt of this task may have saved before it failed: replace, never duplicate.
    DELETE FROM questions WHERE task_id IN (SELECT id FROM holder)
)
INSERT INTO questions (user_id, task_id, category, age_group, difficulty, question, options, correct_answer,
                       emoji, explanation)
SELECT $3, h.id, $4, $5, $7, q.value->>'question', q.value->'options', q.value->>'correctAnswer',
       q.value->>'emoji', q.value->>'explanation'
FROM holder h, jsonb_array_elements($6::jsonb) WITH ORDINALITY AS q(value, n)
ORDER BY q.n
RETURNING id, question, options, correct_answer, emoji, explanation, category, age_group, difficulty;

-- name: load_questions
-- The questions with ids $2 (bigint[]) that belong to user $1, by id.
SELECT id, question, options, correct_answer, emoji, explanation, category, age_group, difficulty,
       validation_verdict, validation_reason
FROM questions
WHERE user_id = $1 AND id = ANY($2::bigint[])
ORDER BY id;

-- name: record_verdicts
-- Verdicts $4 (JSON array of {id, verdict, reason}) on user $3's questions, from task $1 (attempt $2).
UPDATE questions q
SET validation_verdict = v.verdict, validation_reason = v.reason, validated_at = now(), updated_at = now()
FROM jsonb_to_recordset($4::jsonb) AS v(id bigint, verdict text, reason text)
WHERE q.id = v.id AND q.user_id = $3
  AND EXISTS (SELECT FROM background_tasks WHERE id = $1 AND attempt = $2 AND status = 'processing')
RETURNING q.id;

-- name: update_emoji
-- New emoji $4 (JSON array of {id, emoji}) for user $3's questions, from task $1 (attempt $2).
UPDATE questions q
SET emoji = e.emoji, updated_at = now()
FROM jsonb_to_recordset($4::jsonb) AS e(id bigint, emoji text)
WHERE q.id = e.id AND q.user_id = $3
  AND EXISTS (SELECT FROM background_tasks WHERE id = $1 AND attempt = $2 AND status = 'processing')
RETURNING q.id;

-- name: list_questions
-- A page of questions, newest first: owner $1 (NULL: everyone's), category $2 (any case), difficulty $3,
-- age group $4, generating task $5, ids below $6 (the cursor), at most $7.
SELECT id, user_id, task_id, category, age_group, difficulty, question, options, correct_answer, emoji,
       explanation, validation_verdict, validation_reason, validated_at, created_at, updated_at
FROM questions
WHERE ($1::text IS NULL OR user_id = $1)
  AND ($2::text IS NULL OR lower(category) = lower($2))
  AND ($3::text IS NULL OR difficulty = $3)
  AND ($4::text IS NULL OR age_group = $4)
  AND ($5::text IS NULL OR task_id = $5)
  AND ($6::bigint IS NULL OR id < $6)
ORDER BY id DESC
LIMIT $7;

-- name: get_question
-- Question $1, if owner $2 (NULL: anyone's) has it.
SELECT id, user_id, task_id, category, age_group, difficulty, question, options, correct_answer, emoji,
       explanation, validation_verdict, validation_reason, validated_at, created_at, updated_at
FROM questions
WHERE id = $1 AND ($2::text IS NULL OR user_id = $2);

-- name: delete_question
-- Delete question $1 if owner $2 (NULL: anyone's) has it; returns its id.
DELETE FROM questions WHERE id = $1 AND ($2::text IS NULL OR user_id = $2) RETURNING id;
