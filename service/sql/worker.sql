-- The worker's queries: claim, finish, heartbeat, reap. Each calls a SQL function of the schema, so a
-- worker and an operator at psql go through the same rules.

-- name: fail_task
-- Record a failed attempt ($1, $2) with type $3 and message $4; $5 permanent; $6 Retry-After seconds.
SELECT fail_task($1, $2, $3, $4, $5, $6)::text;

-- name: record_attempt_traceback
-- Keep traceback $3 (bounded) with the attempt $2 of task $1 that fail_task() just recorded.
SELECT record_attempt_traceback($1, $2, $3);

-- name: release_task
-- Hand task $1 (attempt $2) back to pending without counting a retry (graceful shutdown).
SELECT release_task($1, $2);

-- name: extend_leases
-- Heartbeat: extend the leases of worker $1 on tasks $2 by $3 seconds; returns the ids it still holds.
SELECT id FROM extend_leases($1, $2::text[], $3) AS id;

-- name: reap_expired_leases
-- Take back up to $1 tasks whose lease expired (their worker died); none within $2 seconds of a server start
-- or an outage (live workers renew first).
SELECT reap_expired_leases($1, $2);

-- name: report_progress
-- Progress of task $1 (attempt $2): $3 percent, description $4 (NULL keeps it); false if no longer ours.
UPDATE background_tasks SET progress = $3, description = coalesce($4, description)
WHERE id = $1 AND attempt = $2 AND status = 'processing'
RETURNING true;

-- name: report_progress_batch
-- Progress of many tasks in one statement (one commit): ids $1, attempts $2, percents $3, descriptions $4
-- (NULL keeps it); returns the ids this worker still holds at that attempt.
UPDATE background_tasks t SET progress = p.percent, description = coalesce(p.description, t.description)
FROM unnest($1::text[], $2::int[], $3::int[], $4::text[]) AS p(id, attempt, percent, description)
WHERE t.id = p.id AND t.attempt = p.attempt AND t.status = 'processing'
RETURNING t.id;

-- name: task_status
-- The status of task $1 (NULL when it no longer exists).
SELECT status::text FROM background_tasks WHERE id = $1;

-- name: register_worker
-- A worker process announces itself.
INSERT INTO bgtasks_workers (worker_id, hostname, pid, concurrency) VALUES ($1, $2, $3, $4)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL;

-- name: worker_heartbeat
-- Worker $1 is alive; no live worker's heartbeat for $2 seconds before it was an outage (grace for the reaper).
SELECT worker_heartbeat($1, $2);

-- name: worker_stopped
-- A worker stopped cleanly.
UPDATE bgtasks_workers SET stopped_at = now(), heartbeat_at = now() WHERE worker_id = $1;

-- name: queue_settings
-- The queue's settings row.
SELECT is_active, poll_interval, max_concurrent_tasks, retry_base_delay_ms, retry_max_delay_ms, last_poll_at,
       updated_at
FROM task_queue_settings WHERE id = 1;

-- name: mark_polled
-- A worker polled: stamp last_poll_at (at most every $1 milliseconds, to keep the settings row quiet).
UPDATE task_queue_settings SET last_poll_at = now()
WHERE id = 1 AND (last_poll_at IS NULL OR last_poll_at < now() - make_interval(secs => $1 / 1000.0));

-- name: record_model_call
-- Usage of one model call of task $1 (attempt $2): model $3, tokens $4/$5/$6 (prompt, completion, total), duration
-- $7 ms, cached prompt tokens $8; its cost from model_prices.
WITH call AS (
    INSERT INTO task_model_calls (task_id, user_id, task_type, attempt, model, prompt_tokens,
                                  completion_tokens, total_tokens, duration_ms, cached_prompt_tokens, cost_usd)
    SELECT id, user_id, task_type, $2, $3, $4, $5, $6, $7, $8, model_call_cost($3, $4, $8, $5)
    FROM background_tasks WHERE id = $1
    RETURNING task_id)
UPDATE background_tasks SET prompt_tokens = prompt_tokens + $4, completion_tokens = completion_tokens + $5
WHERE id IN (SELECT task_id FROM call);

-- name: user_spending_today
-- User $1's daily spending cap (NULL: none) and what their model calls cost since 00:00 UTC.
SELECT cap_usd, spent_usd FROM user_spending_today($1);

-- name: append_task_output
-- Append text $3 to the live output of task $1 (attempt $2 must hold it), at most $4 characters per task;
-- returns the chunk's change number (NULL: not written).
SELECT append_task_output($1, $2, $3, $4) AS seq;

-- name: complete_tasks
-- Complete a batch: ids $1, attempts $2, results $3 (jsonb[]); returns the ids that were still ours.
SELECT id FROM complete_tasks($1::text[], $2::integer[], $3::jsonb[]) AS id;

-- name: complete_and_claim
-- Complete a batch (ids $1, attempts $2, results $3) and claim up to $5 tasks for worker $4 (lease $6 s).
-- Always one row at least (a NULL id: nothing was claimed). When fewer than $5 were claimed, `wait` is the
-- seconds until the earliest delayed or retried task falls due (NULL: none is waiting for its time), so the
-- worker knows when to claim again without another round trip; a full claim skips that lookup.
-- Under max_concurrent_tasks the claim asks only for the worker's fair share while another worker waits
-- (claim_share()), and says whether it came back short (note_claim()).
WITH claimed AS MATERIALIZED (
    SELECT * FROM complete_and_claim($1::text[], $2::integer[], $3::jsonb[], $4,
                                     claim_share($4, $5, $6, coalesce(cardinality($1::text[]), 0)), $6)
), noted AS MATERIALIZED (
    SELECT note_claim($4, $5, (SELECT count(*) FROM claimed)::integer)
)
SELECT c.id, c.task_type, c.payload, c.attempt, c.user_id, c.project_id, c.project_name, c.project_path,
       c.retry_count, c.max_retries, c.run_at, c.created_at, c.started_at,
       CASE WHEN (SELECT count(*) FROM claimed) < $5 THEN (
           SELECT extract(epoch FROM min(run_at) - now())::float8 FROM claimable_tasks WHERE NOT due)
       END AS wait
FROM (SELECT) AS one CROSS JOIN noted LEFT JOIN claimed c ON true;

-- name: release_lost_claims
-- Hand back what a claim of worker $1 took after $2 (the latest claim time the worker was told of) whose
-- answer never arrived (the connection died after the commit): pending again, without counting a retry.
UPDATE background_tasks SET status = 'pending', run_at = now(), worker_id = NULL
WHERE worker_id = $1 AND status = 'processing' AND started_at > $2
RETURNING id;

-- name: task_statuses
-- The status of each of tasks $1 that still exists (a worker re-checks what it holds after reconnecting).
SELECT id, status::text AS status FROM background_tasks WHERE id = ANY($1::text[]);

-- name: enqueue_task
-- Python's `actor.send(**payload)`: a task of type $1 for user $2 with payload $3, due in $4 seconds.
SELECT id FROM enqueue_task($1, $2, $3::jsonb, run_at => now() + make_interval(secs => $4));

-- name: postpone_rate_limited
-- Task $1 (attempt $2) was rate-limited by the provider ($3, $4): back to pending after $5 seconds (NULL:
-- backoff) without counting a retry while its total wait stays within $6 seconds; else fail_task().
SELECT postpone_rate_limited($1, $2, $3, $4, $5, $6)::text;

-- name: reserve_provider_budget
-- Before a model call to provider $1, model $2 for task $3: reserve one request and $4 tokens in the budget that
-- applies, the call lasting at most $5 seconds (reservation_id NULL and wait_seconds > 0: no room yet).
SELECT * FROM reserve_provider_budget($1, $2, $3, $4, $5);

-- name: settle_provider_budget
-- After the call of reservation $1: $2 tokens used (NULL: unknown), $3 rate-limited (429) with Retry-After $4;
-- the provider's headers: $5 requests left, reset in $6 s, $7 tokens left, reset in $8 s, seen $9 s ago.
SELECT settle_provider_budget($1, $2, $3, $4, $5, $6, $7, $8, $9) AS settled;

-- name: postpone_for_budget
-- Task $1 (attempt $2) waits for the budget of provider $3, model $4: back to pending for $5 seconds without
-- counting a retry ($6: why, kept with the attempt).
SELECT postpone_for_budget($1, $2, $3, $4, $5, $6)::text;
