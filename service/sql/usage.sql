-- Model usage for reports and the API: totals from task_model_calls (one row per model call, kept when
-- retention deletes the task). Served by task_model_calls_created_idx when a time window is given.

-- name: usage_totals
-- Calls, tokens and time per user and task type: owner $1 (NULL: everyone's), types $2 (NULL: all), calls at or after $3 and before $4 (NULL: no bound).
SELECT user_id, task_type,
       count(*)::bigint AS calls,
       coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
       coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens,
       coalesce(sum(total_tokens), 0)::bigint AS total_tokens,
       coalesce(sum(duration_ms), 0)::bigint AS duration_ms,
       count(DISTINCT task_id)::bigint AS tasks,
       coalesce(sum(cached_prompt_tokens), 0)::bigint AS cached_prompt_tokens,
       coalesce(sum(cost_usd), 0)::numeric AS cost_usd,
       count(*) FILTER (WHERE cost_usd IS NULL)::bigint AS unpriced_calls
FROM task_model_calls
WHERE ($1::text IS NULL OR user_id = $1)
  AND ($2::text[] IS NULL OR task_type = ANY($2::text[]))
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::timestamptz IS NULL OR created_at < $4)
GROUP BY user_id, task_type
ORDER BY user_id, task_type;

-- name: task_model_calls
-- Every model call of task $1, oldest first: model, attempt, tokens and duration.
SELECT attempt, model, prompt_tokens, completion_tokens, total_tokens, duration_ms, created_at,
       cached_prompt_tokens, cost_usd
FROM task_model_calls WHERE task_id = $1 ORDER BY id;
