-- Provider budgets (provider_budgets, migration 0016) for the API, the CLI and /metrics. The worker's reserve,
-- settle and postpone queries are in worker.sql.

-- name: list_provider_budgets
-- Every provider budget as it stands (provider_budget_usage), by provider then model ('*' last).
SELECT * FROM provider_budget_usage ORDER BY provider, model = '*', model;

-- name: get_provider_budget
-- The budget of provider $1, model $2 as it stands.
SELECT * FROM provider_budget_usage WHERE provider = $1 AND model = $2;

-- name: set_provider_budget
-- Create or change the budget of provider $1, model $2: $3 requests per minute, $4 tokens per minute (NULL: not
-- limited), counted per $5 seconds (NULL: 60, or unchanged); the limits are always both set.
INSERT INTO provider_budgets AS b (provider, model, requests_per_minute, tokens_per_minute, window_seconds)
VALUES ($1, $2, $3, $4, coalesce($5, 60))
ON CONFLICT (provider, model) DO UPDATE SET
    requests_per_minute = excluded.requests_per_minute,
    tokens_per_minute = excluded.tokens_per_minute,
    window_seconds = coalesce($5, b.window_seconds)
RETURNING provider, model;

-- name: delete_provider_budget
-- Remove the budget of provider $1, model $2 (its waiting tasks run again at once).
DELETE FROM provider_budgets WHERE provider = $1 AND model = $2 RETURNING provider;
