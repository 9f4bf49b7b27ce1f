-- Provider budgets shared by the fleet: requests and tokens per minute per provider (base URL) and model, kept in
-- the database so every worker on every host counts against the same numbers, read at each reservation (a change
-- at psql applies to the next model call anywhere). A model call first reserves a request and a token estimate
-- (reserve_provider_budget(), one short transaction under the budget row's lock, so concurrent reservations
-- never overrun it), then settles it with the actual usage and the provider's own signals
-- (settle_provider_budget(): x-ratelimit-* headers, 429s). A task that must wait is put back in the queue
-- (postpone_for_budget()) without counting a retry and says why (task_waiting_reason(): provider_budget).

CREATE TABLE provider_budgets (
    provider text NOT NULL CHECK (provider <> ''),
    model text NOT NULL DEFAULT '*' CHECK (model <> ''),
    requests_per_minute integer CHECK (requests_per_minute > 0),
    tokens_per_minute integer CHECK (tokens_per_minute > 0),
    window_seconds double precision NOT NULL DEFAULT 60 CHECK (window_seconds > 0 AND window_seconds <= 3600),
    shrink_factor double precision NOT NULL DEFAULT 1 CHECK (shrink_factor > 0 AND shrink_factor <= 1),
    shrunk_at timestamptz,
    blocked_until timestamptz,
    provider_requests_left integer,
    provider_requests_reset_at timestamptz,
    provider_tokens_left bigint,
    provider_tokens_reset_at timestamptz,
    provider_observed_at timestamptz,
    waits bigint NOT NULL DEFAULT 0,
    rate_limited bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, model)
);
COMMENT ON TABLE provider_budgets IS
  'How much every worker together may ask of a model provider: requests and tokens per minute per provider (the base URL calls go to, e.g. https://api.openai.com/v1) and model (''*'': every model of that provider without a row of its own). Change it with UPDATE, the API (PUT /api/provider-budgets) or `bgtasks budgets set`; the next reservation anywhere reads it.';
COMMENT ON COLUMN provider_budgets.provider IS 'The base URL model calls go to (OPENAI_BASE_URL without a trailing slash; https://api.openai.com/v1 when unset).';
COMMENT ON COLUMN provider_budgets.model IS 'The model name the calls ask for, or ''*'' for every model of the provider without a row of its own.';
COMMENT ON COLUMN provider_budgets.requests_per_minute IS 'Most model calls started in any window_seconds (a minute unless shortened); NULL: not limited.';
COMMENT ON COLUMN provider_budgets.tokens_per_minute IS 'Most tokens (prompt + completion) in any window_seconds: a call reserves its estimate (prompt characters / 4 + its output limit), corrected to its actual usage when it ends; NULL: not limited.';
COMMENT ON COLUMN provider_budgets.window_seconds IS 'The length of the "minute" the limits count over: 60 for a provider''s per-minute limits; shorter only to test.';
COMMENT ON COLUMN provider_budgets.shrink_factor IS 'Adapted, not configured: halved by each 429 the provider answers (down to 0.1); the limits in effect are the configured ones times this factor, which climbs back to 1 over one window after shrunk_at.';
COMMENT ON COLUMN provider_budgets.shrunk_at IS 'When a 429 last shrank the budget (shrink_factor).';
COMMENT ON COLUMN provider_budgets.blocked_until IS 'No call starts before this: the provider''s Retry-After on a 429, or its reset time when it said nothing is left.';
COMMENT ON COLUMN provider_budgets.provider_requests_left IS 'The provider''s own count (x-ratelimit-remaining-requests) at provider_observed_at; calls settled since count against it until provider_requests_reset_at.';
COMMENT ON COLUMN provider_budgets.provider_requests_reset_at IS 'When the provider said its request limit resets (x-ratelimit-reset-requests).';
COMMENT ON COLUMN provider_budgets.provider_tokens_left IS 'The provider''s own count (x-ratelimit-remaining-tokens) at provider_observed_at.';
COMMENT ON COLUMN provider_budgets.provider_tokens_reset_at IS 'When the provider said its token limit resets (x-ratelimit-reset-tokens).';
COMMENT ON COLUMN provider_budgets.provider_observed_at IS 'When a response last carried the provider''s x-ratelimit-* headers.';
COMMENT ON COLUMN provider_budgets.waits IS 'How many times a task was sent back to the queue to wait for this budget (a counter; /metrics).';
COMMENT ON COLUMN provider_budgets.rate_limited IS 'How many calls under this budget the provider still answered with 429 (a counter; /metrics).';
COMMENT ON COLUMN provider_budgets.updated_at IS 'When an operator last changed the limits.';

CREATE TABLE provider_budget_reservations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider text NOT NULL,
    model text NOT NULL,
    task_id text,
    tokens integer NOT NULL CHECK (tokens >= 0),
    reserved_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    settled_at timestamptz,
    counts_until timestamptz NOT NULL,
    FOREIGN KEY (provider, model) REFERENCES provider_budgets ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX provider_budget_reservations_window_idx ON provider_budget_reservations (provider, model, counts_until);
COMMENT ON TABLE provider_budget_reservations IS
  'Model calls counted against a provider budget: one row per call, from its reservation until a window after it ended (counts_until); rows past it are deleted by the next reservation. SELECT provider, model, count(*), sum(tokens) FROM provider_budget_reservations WHERE counts_until > now() GROUP BY 1, 2.';
COMMENT ON COLUMN provider_budget_reservations.provider IS 'The budget (provider_budgets) the call counts against.';
COMMENT ON COLUMN provider_budget_reservations.id IS 'The reservation, as settle_provider_budget() names it.';
COMMENT ON COLUMN provider_budget_reservations.model IS 'The model of the budget the call counts against (''*'' for the provider''s shared row).';
COMMENT ON COLUMN provider_budget_reservations.reserved_at IS 'When the call was let through.';
COMMENT ON COLUMN provider_budget_reservations.task_id IS 'The task that made the call.';
COMMENT ON COLUMN provider_budget_reservations.tokens IS 'The token estimate while the call runs; its actual total_tokens once settled.';
COMMENT ON COLUMN provider_budget_reservations.settled_at IS 'When the call ended (NULL: still running, or its worker died: it then counts until counts_until).';
COMMENT ON COLUMN provider_budget_reservations.counts_until IS 'The call stops counting then: a window after it ended (it reached the provider before that), or, while it runs, a window after its longest possible end.';

CREATE TABLE provider_budget_waits (
    task_id text PRIMARY KEY REFERENCES background_tasks (id) ON DELETE CASCADE,
    provider text NOT NULL,
    model text NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    until timestamptz NOT NULL
);
CREATE INDEX provider_budget_waits_budget_idx ON provider_budget_waits (provider, model, until);
COMMENT ON TABLE provider_budget_waits IS
  'Tasks sent back to the queue to wait for a provider budget, and until when: a later waiter is given a later free slot (no herd on one), and a change of the budget wakes them (provider_budgets_changed).';
COMMENT ON COLUMN provider_budget_waits.task_id IS 'The waiting task.';
COMMENT ON COLUMN provider_budget_waits.provider IS 'The budget it waits for: provider (base URL) …';
COMMENT ON COLUMN provider_budget_waits.model IS '… and model (''*'': the provider''s shared row).';
COMMENT ON COLUMN provider_budget_waits.since IS 'When it first had to wait.';
COMMENT ON COLUMN provider_budget_waits.until IS 'When the task runs again (its run_at), the moment a slot of the budget is expected to be free for it.';

ALTER TABLE task_attempt_errors DROP CONSTRAINT task_attempt_errors_outcome_check;
ALTER TABLE task_attempt_errors ADD CONSTRAINT task_attempt_errors_outcome_check
    CHECK (outcome IN ('retried', 'failed', 'lease_expired', 'rate_limited', 'budget_wait'));
COMMENT ON COLUMN task_attempt_errors.outcome IS
  'retried (back to pending after backoff), failed (task ended in error), lease_expired (worker lost; retried or failed), rate_limited (the provider said 429: back to pending without counting a retry), budget_wait (a provider budget had no room: back in the queue before any call, without counting a retry).';

-- The share of the configured limits in effect: 1, or less after a 429, climbing back over one window.
CREATE FUNCTION provider_budget_factor(b provider_budgets, at timestamptz) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN b.shrunk_at IS NULL OR b.shrink_factor >= 1 THEN 1::float8
                ELSE least(1::float8, b.shrink_factor + (1 - b.shrink_factor)
                           * extract(epoch FROM at - b.shrunk_at)::float8 / b.window_seconds) END
$$;
COMMENT ON FUNCTION provider_budget_factor(provider_budgets, timestamptz) IS
  'The share of a budget''s configured limits in effect at a time: shrink_factor after a 429, back to 1 linearly over window_seconds.';

-- When a counted call is expected to stop counting: a settled one at counts_until; a running one a window
-- after it started (it usually ends soon), but no sooner than a tenth of a window from now.
CREATE FUNCTION provider_budget_expected_end(r provider_budget_reservations, window_seconds double precision,
                                             at timestamptz) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN r.settled_at IS NOT NULL THEN r.counts_until
                ELSE greatest(r.reserved_at + make_interval(secs => window_seconds),
                              at + make_interval(secs => window_seconds / 10)) END
$$;
COMMENT ON FUNCTION provider_budget_expected_end(provider_budget_reservations, double precision, timestamptz) IS
  'When a call counted against a budget is expected to free its room: counts_until once settled; while it runs, a window after it started (at the earliest a tenth of a window from now).';

CREATE FUNCTION reserve_provider_budget(call_provider text, call_model text, calling_task text, estimate integer,
                                        hold_seconds double precision)
RETURNS TABLE (reservation_id bigint, wait_seconds double precision, budget_provider text, budget_model text,
               limited_by text)
LANGUAGE plpgsql AS $$
DECLARE
    b provider_budgets;
    at timestamptz := clock_timestamp();
    factor double precision;
    lim bigint;
    n bigint;
    used bigint;
    want bigint;
    ahead bigint;
    turn bigint;
    slot timestamptz;
    wait double precision := 0;
    why text;
    made bigint;
BEGIN
    -- The budget row's lock makes reservations of one budget take turns: each counts what the one before
    -- committed (every statement of a plpgsql function reads a fresh snapshot).
    SELECT * INTO b FROM provider_budgets p
    WHERE p.provider = call_provider AND p.model IN (call_model, '*')
    ORDER BY p.model = '*' LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, 0::float8, NULL::text, NULL::text, NULL::text;
        RETURN;
    END IF;
    at := clock_timestamp();
    DELETE FROM provider_budget_reservations r
    WHERE r.provider = b.provider AND r.model = b.model AND r.counts_until <= at;
    factor := provider_budget_factor(b, at);
    -- Tasks already waiting for this budget are ahead of this one: it is given the free slot after theirs.
    SELECT count(*) INTO ahead FROM provider_budget_waits w JOIN background_tasks t ON t.id = w.task_id
    WHERE w.provider = b.provider AND w.model = b.model AND w.task_id IS DISTINCT FROM calling_task
      AND w.until > at AND t.status = 'pending';

    IF b.blocked_until > at THEN
        wait := extract(epoch FROM b.blocked_until - at);
        why := 'the provider asked to wait (a 429''s Retry-After)';
    END IF;

    IF b.requests_per_minute IS NOT NULL THEN
        lim := greatest(1, floor(b.requests_per_minute * factor));
        SELECT count(*) INTO n FROM provider_budget_reservations r
        WHERE r.provider = b.provider AND r.model = b.model;
        IF n >= lim THEN
            turn := n - lim + ahead;  -- this task's slot frees when that many calls (0-based) stopped counting
            SELECT e INTO slot FROM (
                SELECT provider_budget_expected_end(r, b.window_seconds, at) AS e, r.id
                FROM provider_budget_reservations r WHERE r.provider = b.provider AND r.model = b.model) x
            ORDER BY e, id OFFSET turn % n LIMIT 1;
            slot := slot + make_interval(secs => b.window_seconds * (turn / n));
            IF extract(epoch FROM slot - at) > wait THEN
                wait := extract(epoch FROM slot - at);
                why := format('%s requests per %s s in effect', lim, b.window_seconds);
            END IF;
        END IF;
    END IF;

    IF b.provider_requests_left IS NOT NULL AND b.provider_requests_reset_at > at THEN
        -- Calls the provider had not seen when it said how many were left count against that number.
        SELECT count(*) INTO n FROM provider_budget_reservations r
        WHERE r.provider = b.provider AND r.model = b.model
          AND (r.settled_at IS NULL OR r.settled_at > b.provider_observed_at);
        IF n >= b.provider_requests_left AND extract(epoch FROM b.provider_requests_reset_at - at) > wait THEN
            wait := extract(epoch FROM b.provider_requests_reset_at - at);
            why := format('the provider said %s requests were left (x-ratelimit-remaining-requests)',
                          b.provider_requests_left);
        END IF;
    END IF;

    IF b.tokens_per_minute IS NOT NULL THEN
        lim := greatest(1, floor(b.tokens_per_minute * factor));
        want := least(greatest(estimate, 0), lim);  -- a call larger than the budget waits for an empty window
        SELECT coalesce(sum(r.tokens), 0) INTO used FROM provider_budget_reservations r
        WHERE r.provider = b.provider AND r.model = b.model;
        IF used + want > lim THEN
            SELECT min(e) INTO slot FROM (
                SELECT e, sum(tokens) OVER (ORDER BY e, id) AS freed FROM (
                    SELECT provider_budget_expected_end(r, b.window_seconds, at) AS e, r.tokens, r.id
                    FROM provider_budget_reservations r WHERE r.provider = b.provider AND r.model = b.model) y) x
            WHERE used - freed + want <= lim;
            IF extract(epoch FROM slot - at) > wait THEN
                wait := extract(epoch FROM slot - at);
                why := format('%s tokens per %s s in effect, %s counted, %s asked', lim, b.window_seconds, used, want);
            END IF;
        END IF;
    END IF;

    IF b.provider_tokens_left IS NOT NULL AND b.provider_tokens_reset_at > at THEN
        SELECT coalesce(sum(r.tokens), 0) INTO used FROM provider_budget_reservations r
        WHERE r.provider = b.provider AND r.model = b.model
          AND (r.settled_at IS NULL OR r.settled_at > b.provider_observed_at);
        IF used + greatest(estimate, 0) > b.provider_tokens_left
           AND extract(epoch FROM b.provider_tokens_reset_at - at) > wait THEN
            wait := extract(epoch FROM b.provider_tokens_reset_at - at);
            why := format('the provider said %s tokens were left (x-ratelimit-remaining-tokens)', b.provider_tokens_left);
        END IF;
    END IF;

    IF wait > 0 THEN
        UPDATE provider_budgets p SET waits = p.waits + 1 WHERE p.provider = b.provider AND p.model = b.model;
        RETURN QUERY SELECT NULL::bigint, wait, b.provider, b.model, why;
        RETURN;
    END IF;
    DELETE FROM provider_budget_waits w WHERE w.task_id = calling_task;
    INSERT INTO provider_budget_reservations (provider, model, task_id, tokens, reserved_at, counts_until)
    VALUES (b.provider, b.model, calling_task, greatest(estimate, 0), at,
            at + make_interval(secs => b.window_seconds + greatest(hold_seconds, 0)))
    RETURNING id INTO made;
    RETURN QUERY SELECT made, 0::float8, b.provider, b.model, NULL::text;
END
$$;
COMMENT ON FUNCTION reserve_provider_budget(text, text, text, integer, double precision) IS
  'Worker, before a model call to a provider (base URL) and model: count one request and `estimate` tokens against the budget that applies (provider_budgets: the model''s row, else ''*''). Room: a reservation id (settle it with settle_provider_budget()), wait 0. No room: no id, the seconds until this task''s turn and what is full. No budget: no id, wait 0. hold_seconds: the call''s longest possible duration (a dead worker''s reservation counts until then plus a window).';

CREATE FUNCTION settle_provider_budget(reservation bigint, used_tokens integer, was_rate_limited boolean,
                                       retry_after_seconds double precision, requests_left integer,
                                       requests_reset_seconds double precision, tokens_left bigint,
                                       tokens_reset_seconds double precision, observed_seconds_ago double precision)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r provider_budget_reservations;
    b provider_budgets;
    at timestamptz;
    seen timestamptz;
BEGIN
    SELECT * INTO r FROM provider_budget_reservations x WHERE x.id = reservation;
    IF NOT FOUND THEN
        RETURN false;  -- its budget was deleted meanwhile
    END IF;
    -- Locks in the order reserve_provider_budget() takes them: the budget row, then its reservations.
    SELECT * INTO b FROM provider_budgets p WHERE p.provider = r.provider AND p.model = r.model FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    at := clock_timestamp();
    -- Counted from now, not from its start: the provider saw the call before it ended.
    UPDATE provider_budget_reservations x SET tokens = coalesce(greatest(used_tokens, 0), x.tokens), settled_at = at,
        counts_until = at + make_interval(secs => b.window_seconds)
    WHERE x.id = reservation;
    IF was_rate_limited THEN
        UPDATE provider_budgets p SET
            rate_limited = p.rate_limited + 1,
            -- One halving per tenth of a window: a burst of 429s to calls in flight together is one signal.
            shrink_factor = CASE WHEN p.shrunk_at > at - make_interval(secs => p.window_seconds / 10) THEN p.shrink_factor
                                 ELSE greatest(0.1, provider_budget_factor(b, at) / 2) END,
            shrunk_at = CASE WHEN p.shrunk_at > at - make_interval(secs => p.window_seconds / 10) THEN p.shrunk_at
                             ELSE at END,
            blocked_until = greatest(p.blocked_until, at + make_interval(secs => coalesce(retry_after_seconds,
                                     requests_reset_seconds, p.window_seconds / coalesce(p.requests_per_minute, 1))))
        WHERE p.provider = b.provider AND p.model = b.model;
    END IF;
    seen := at - make_interval(secs => greatest(coalesce(observed_seconds_ago, 0), 0));
    IF (requests_left IS NOT NULL OR tokens_left IS NOT NULL)
       AND seen > coalesce(b.provider_observed_at, '-infinity') THEN
        UPDATE provider_budgets p SET
            provider_observed_at = seen,
            provider_requests_left = requests_left,
            provider_requests_reset_at = seen + make_interval(secs => coalesce(requests_reset_seconds, 0)),
            provider_tokens_left = tokens_left,
            provider_tokens_reset_at = seen + make_interval(secs => coalesce(tokens_reset_seconds, 0))
        WHERE p.provider = b.provider AND p.model = b.model;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION settle_provider_budget(bigint, integer, boolean, double precision, integer, double precision, bigint, double precision, double precision) IS
  'Worker, after a model call: its reservation counts its actual tokens until a window from now; a 429 shrinks the budget (shrink_factor) and blocks it for Retry-After; x-ratelimit-remaining-*/reset-* headers (seen observed_seconds_ago) are kept as the provider''s own count.';

CREATE FUNCTION postpone_for_budget(waiting_task text, claimed_attempt integer, budget_provider text,
                                    budget_model text, wait_seconds double precision, message text)
RETURNS task_status LANGUAGE plpgsql AS $$
DECLARE
    t background_tasks;
    wait double precision := greatest(coalesce(wait_seconds, 0), 0);
BEGIN
    SELECT * INTO t FROM background_tasks
    WHERE id = waiting_task AND attempt = claimed_attempt AND status = 'processing' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;  -- cancelled, taken back or deleted meanwhile
    END IF;
    INSERT INTO task_attempt_errors (task_id, attempt, worker_id, error_type, error_message, outcome, started_at)
    VALUES (t.id, t.attempt, t.worker_id, 'WaitingForBudget', message, 'budget_wait', t.started_at);
    INSERT INTO provider_budget_waits (task_id, provider, model, until)
    VALUES (t.id, budget_provider, budget_model, now() + make_interval(secs => wait))
    ON CONFLICT (task_id) DO UPDATE SET provider = EXCLUDED.provider, model = EXCLUDED.model, until = EXCLUDED.until;
    UPDATE background_tasks SET
        status = 'pending',
        run_at = now() + make_interval(secs => wait),
        description = format('Waiting for the provider''s budget (%s, model %s): runs again in %s s',
                             budget_provider, budget_model, round(wait::numeric, 1))
    WHERE id = t.id;
    RETURN 'pending';
END
$$;
COMMENT ON FUNCTION postpone_for_budget(text, integer, text, text, double precision, text) IS
  'Worker: a provider budget had no room for this attempt''s model call; back to pending until its turn (run_at), without counting a retry, recorded as outcome budget_wait.';

-- An operator's change of a budget (UPDATE at psql, the API, the CLI) wakes the tasks waiting for it: their
-- turn was computed under the old numbers. The next reservation reads the new ones.
CREATE FUNCTION provider_budgets_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE background_tasks t SET run_at = now(), description = 'The provider''s budget changed: runs again now'
    FROM provider_budget_waits w
    WHERE w.provider = OLD.provider AND w.model = OLD.model AND t.id = w.task_id AND t.status = 'pending'
      AND t.run_at > now();
    DELETE FROM provider_budget_waits w WHERE w.provider = OLD.provider AND w.model = OLD.model;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    NEW.updated_at := now();
    NEW.shrink_factor := 1;  -- new numbers start whole; the provider's next signals shrink them again
    NEW.shrunk_at := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER provider_budgets_changed BEFORE UPDATE ON provider_budgets FOR EACH ROW
    WHEN ((OLD.requests_per_minute, OLD.tokens_per_minute, OLD.window_seconds)
          IS DISTINCT FROM (NEW.requests_per_minute, NEW.tokens_per_minute, NEW.window_seconds))
    EXECUTE FUNCTION provider_budgets_changed();
CREATE TRIGGER provider_budgets_deleted BEFORE DELETE ON provider_budgets FOR EACH ROW
    EXECUTE FUNCTION provider_budgets_changed();
COMMENT ON TRIGGER provider_budgets_changed ON provider_budgets IS
  'A change of the limits wakes the tasks waiting for the budget and resets its adapted share (shrink_factor).';
COMMENT ON TRIGGER provider_budgets_deleted ON provider_budgets IS
  'A deleted budget wakes the tasks waiting for it.';

CREATE VIEW provider_budget_usage AS
SELECT b.provider, b.model, b.requests_per_minute, b.tokens_per_minute, b.window_seconds,
       f.factor AS share_in_effect,
       floor(b.requests_per_minute * f.factor)::bigint AS requests_in_effect,
       floor(b.tokens_per_minute * f.factor)::bigint AS tokens_in_effect,
       coalesce(r.requests, 0) AS requests_counted, coalesce(r.tokens, 0) AS tokens_counted,
       coalesce(w.tasks, 0) AS tasks_waiting, b.waits, b.rate_limited, b.blocked_until,
       b.provider_requests_left, b.provider_tokens_left, b.provider_observed_at, b.updated_at
FROM provider_budgets b
CROSS JOIN LATERAL (SELECT provider_budget_factor(b, clock_timestamp()) AS factor) f
LEFT JOIN LATERAL (SELECT count(*) AS requests, sum(x.tokens)::bigint AS tokens FROM provider_budget_reservations x
                   WHERE x.provider = b.provider AND x.model = b.model AND x.counts_until > clock_timestamp()) r ON true
LEFT JOIN LATERAL (SELECT count(*) AS tasks FROM provider_budget_waits x JOIN background_tasks t ON t.id = x.task_id
                   WHERE x.provider = b.provider AND x.model = b.model AND t.status = 'pending') w ON true;
COMMENT ON VIEW provider_budget_usage IS
  'Each provider budget as it stands: the limits configured and in effect (after 429s), what is counted in the current window, how many tasks wait for it, and its counters (waits, rate_limited). SELECT * FROM provider_budget_usage;';

CREATE OR REPLACE FUNCTION task_waiting_reason(t background_tasks) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    settings task_queue_settings;
    ids jsonb;
    last_outcome text;
    lim integer;
    running integer;
    wait double precision;
    budget_provider text;
    budget_model text;
BEGIN
    IF t.status IS DISTINCT FROM 'pending' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO settings FROM task_queue_settings WHERE id = 1;

    IF NOT coalesce(settings.is_active, true) THEN
        RETURN jsonb_build_object('reason', 'queue_stopped',
            'text', 'queue stopped (task_queue_settings.is_active is false): no worker claims until it is resumed');
    END IF;

    IF t.waiting_for > 0 THEN
        SELECT jsonb_agg(b.id ORDER BY b.created_at, b.id) INTO ids
        FROM task_dependencies d JOIN background_tasks b ON b.id = d.depends_on
        WHERE d.task_id = t.id AND b.status <> 'completed';
        RETURN jsonb_build_object('reason', 'dependencies', 'count', t.waiting_for,
            'taskIds', coalesce(ids, '[]'::jsonb),
            'text', format('waiting on %s %s: %s', t.waiting_for,
                           CASE WHEN t.waiting_for = 1 THEN 'dependency' ELSE 'dependencies' END,
                           (SELECT string_agg(x, ', ') FROM jsonb_array_elements_text(coalesce(ids, '[]')) x)));
    END IF;

    IF t.run_at > now() THEN
        wait := extract(epoch FROM t.run_at - now());
        IF t.attempt > 0 THEN  -- it ran before: why it runs again later is its latest attempt's outcome
            SELECT e.outcome INTO last_outcome FROM task_attempt_errors e
            WHERE e.task_id = t.id ORDER BY e.attempt DESC, e.id DESC LIMIT 1;
        END IF;
        IF last_outcome = 'budget_wait' THEN
            SELECT w.provider, w.model INTO budget_provider, budget_model FROM provider_budget_waits w
            WHERE w.task_id = t.id;
            RETURN jsonb_build_object('reason', 'provider_budget', 'runAt', t.run_at, 'provider', budget_provider,
                'model', budget_model,
                'text', format('waiting for the provider''s budget (provider_budgets %s, model %s): runs again in %s',
                               budget_provider, budget_model, waiting_duration_text(wait)));
        ELSIF last_outcome = 'rate_limited' THEN
            RETURN jsonb_build_object('reason', 'rate_limited', 'runAt', t.run_at,
                'text', format('waiting for the model provider''s budget (rate limited): runs again in %s',
                               waiting_duration_text(wait)));
        ELSIF last_outcome IN ('retried', 'lease_expired') THEN
            RETURN jsonb_build_object('reason', 'retry_backoff', 'runAt', t.run_at, 'retry', t.retry_count,
                'maxRetries', t.max_retries,
                'text', format('backing off before retry %s of %s: runs in %s', t.retry_count, t.max_retries,
                               waiting_duration_text(wait)));
        END IF;
        RETURN jsonb_build_object('reason', 'scheduled', 'runAt', t.run_at,
            'text', format('scheduled for later: run_at %s (in %s)',
                           to_char(t.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                           waiting_duration_text(wait)));
    END IF;

    -- A worker that published no types claims any type (worker_task_types() NULL).
    IF NOT EXISTS (
        SELECT FROM bgtasks_workers w
        WHERE w.stopped_at IS NULL AND w.heartbeat_at >= now() - worker_stale_after()
          AND (EXISTS (SELECT FROM task_type_workers s WHERE s.worker_id = w.worker_id AND s.task_type = t.task_type)
               OR NOT EXISTS (SELECT FROM task_type_workers s WHERE s.worker_id = w.worker_id)))
    THEN
        RETURN jsonb_build_object('reason', 'no_worker', 'taskType', t.task_type,
            'text', format('no live worker serves task type %s (see task_types_served)', t.task_type));
    END IF;

    -- Running counts read the partial index of processing rows: as many as run, never the whole table.
    lim := user_running_limit(t.user_id);
    IF lim IS NOT NULL THEN
        SELECT count(*) INTO running FROM background_tasks r WHERE r.status = 'processing' AND r.user_id = t.user_id;
        IF running >= lim THEN
            RETURN jsonb_build_object('reason', 'user_limit', 'userId', t.user_id, 'running', running, 'limit', lim,
                'text', format('held by the user''s limit: %s/%s running (user_limits of %s)', running, lim,
                               t.user_id));
        END IF;
    END IF;

    SELECT l.max_running INTO lim FROM task_type_limits l WHERE l.task_type = t.task_type;
    IF FOUND THEN
        SELECT count(*) INTO running FROM background_tasks r WHERE r.status = 'processing' AND r.task_type = t.task_type;
        IF running >= lim THEN
            RETURN jsonb_build_object('reason', 'type_limit', 'taskType', t.task_type, 'running', running,
                'limit', lim,
                'text', format('held by the type''s limit: %s/%s running (task_type_limits of %s)', running, lim,
                               t.task_type));
        END IF;
    END IF;

    IF settings.max_concurrent_tasks IS NOT NULL THEN
        SELECT count(*) INTO running FROM background_tasks r WHERE r.status = 'processing';
        IF running >= settings.max_concurrent_tasks THEN
            RETURN jsonb_build_object('reason', 'global_limit', 'running', running,
                'limit', settings.max_concurrent_tasks,
                'text', format('held by the global limit: %s/%s running (task_queue_settings.max_concurrent_tasks)',
                               running, settings.max_concurrent_tasks));
        END IF;
    END IF;

    RETURN jsonb_build_object('reason', 'ready', 'text', 'ready: next free worker thread claims it (priority, then age)');
END
$$;COMMENT ON FUNCTION task_waiting_reason(background_tasks) IS
  'Why a pending task is not running yet, as {"reason", "text", ...}: queue_stopped, dependencies (count, taskIds), scheduled (runAt), retry_backoff (retry, runAt), rate_limited (runAt), provider_budget (runAt, provider, model), no_worker (taskType), user_limit / type_limit / global_limit (running, limit), ready. NULL unless pending. SELECT task_waiting_reason(t) FROM background_tasks t WHERE id = ''…''.';
