-- Outages are nobody's fault: a lease that ran out while the database was down, restarting or unreachable
-- for every worker is not a lost attempt. Workers' heartbeats tell when the database was last reachable; after
-- a gap (or a server restart) the reaper waits a grace period, so live workers renew before anything is taken.

CREATE TABLE lease_reaper (
    id              smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    reachable_since timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE lease_reaper IS
  'One row: since when workers have reached the database without a gap; reap_expired_leases() takes nothing back during a grace period after it (or after the server started).';
COMMENT ON COLUMN lease_reaper.id IS 'Always 1: the table has one row.';
COMMENT ON COLUMN lease_reaper.reachable_since IS
  'The first worker heartbeat after a stretch without any (the database was down or unreachable); workers get a grace period from here to renew their leases.';
INSERT INTO lease_reaper DEFAULT VALUES;

CREATE FUNCTION worker_heartbeat(worker text, outage_seconds double precision DEFAULT 12)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- No live worker heartbeat for longer than outage_seconds: nobody could reach the database (or every
    -- worker was frozen). Leases that ran out meanwhile get a grace period before they are reaped.
    IF NOT EXISTS (SELECT FROM bgtasks_workers WHERE stopped_at IS NULL
                   AND heartbeat_at >= now() - make_interval(secs => outage_seconds)) THEN
        UPDATE lease_reaper SET reachable_since = now() WHERE id = 1;
    END IF;
    UPDATE bgtasks_workers SET heartbeat_at = now() WHERE worker_id = worker;
END
$$;
COMMENT ON FUNCTION worker_heartbeat(text, double precision) IS
  'Worker: it is alive. The first heartbeat after none for outage_seconds (an outage) starts the reapers'' grace period (lease_reaper).';

DROP FUNCTION reap_expired_leases(integer);
CREATE FUNCTION reap_expired_leases(max_tasks integer DEFAULT 100, grace_seconds double precision DEFAULT 30)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t record;
    n integer := 0;
BEGIN
    -- Within grace_seconds of the server's start or of the end of an outage, live workers may not have
    -- renewed yet: their leases ran out only because the database could not be reached. Take nothing back.
    IF now() < (SELECT greatest(reachable_since, pg_postmaster_start_time()) FROM lease_reaper WHERE id = 1)
               + make_interval(secs => grace_seconds) THEN
        RETURN 0;
    END IF;
    FOR t IN
        SELECT id, attempt, worker_id, lease_expires_at FROM background_tasks
        WHERE status = 'processing' AND lease_expires_at < now()
        ORDER BY lease_expires_at LIMIT max_tasks
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM fail_task(t.id, t.attempt, 'LeaseExpired',
                          format('worker %s stopped heartbeating (lease expired at %s); the attempt was lost',
                                 t.worker_id, t.lease_expires_at));
        UPDATE task_attempt_errors SET outcome = 'lease_expired'
        WHERE task_id = t.id AND attempt = t.attempt AND error_type = 'LeaseExpired';
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION reap_expired_leases(integer, double precision) IS
  'Take back tasks whose worker died: retried (counted) or failed past max_retries; nothing within grace_seconds of a server start or an outage (lease_reaper). Any worker runs it; safe to call at psql.';

-- A fair share under max_concurrent_tasks. A worker completes and claims in one transaction, so under a
-- saturated limit the room its finished tasks free is taken by its own next claim before anyone else hears
-- of it: a worker that lost its running tasks (cut off, restarted) or joined late never got one back while
-- the others' threads covered the limit. Now a worker whose claim came back short says so
-- (note_claim(): bgtasks_workers.claim_short_at), and while another live worker waits, a worker claims only
-- up to its share of the limit (claim_share(): the limit times its concurrency over that of the live
-- workers, rounded up, so the shares cover the limit and no room is left unused). The limit itself is still
-- enforced under claim_tasks()'s lock; the share only decides who gets the room.
ALTER TABLE bgtasks_workers ADD COLUMN claim_short_at timestamptz;
COMMENT ON COLUMN bgtasks_workers.claim_short_at IS
  'Its latest claim under max_concurrent_tasks that got fewer tasks than it had room for (NULL: its latest claim got all it asked); while recent, the other workers claim only up to their share of the limit.';

CREATE FUNCTION claim_share(worker text, max_tasks integer, lease_seconds double precision,
                            finishing integer DEFAULT 0) RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    lim integer;
    total_concurrency bigint;
    own_concurrency integer;
    others_waiting boolean;
    running integer;
BEGIN
    SELECT max_concurrent_tasks INTO lim FROM task_queue_settings WHERE id = 1;
    IF lim IS NULL OR max_tasks <= 0 THEN
        RETURN max_tasks;
    END IF;
    SELECT sum(w.concurrency), bool_or(w.worker_id <> worker AND w.claim_short_at
                                        > now() - make_interval(secs => lease_seconds)),
           max(w.concurrency) FILTER (WHERE w.worker_id = worker)
    INTO total_concurrency, others_waiting, own_concurrency
    FROM bgtasks_workers w
    WHERE w.stopped_at IS NULL AND w.heartbeat_at > now() - make_interval(secs => lease_seconds);
    IF NOT coalesce(others_waiting, false) OR own_concurrency IS NULL THEN
        RETURN max_tasks;
    END IF;
    SELECT count(*) INTO running FROM background_tasks t WHERE t.status = 'processing' AND t.worker_id = worker;
    RETURN least(max_tasks, greatest(0, ceil(lim::numeric * own_concurrency / total_concurrency)::integer
                                        - (running - finishing)));
END
$$;
COMMENT ON FUNCTION claim_share(text, integer, double precision, integer) IS
  'How many of max_tasks a worker may claim: all, unless max_concurrent_tasks is set and another live worker''s claim came back short; then up to its share of the limit (limit x its concurrency / live workers'' concurrency, rounded up), less what it runs (finishing: of those, how many it is completing now).';

CREATE FUNCTION note_claim(worker text, asked integer, got integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT max_concurrent_tasks FROM task_queue_settings WHERE id = 1) IS NULL THEN
        RETURN;
    END IF;
    IF got < asked THEN  -- at most one write a second per waiting worker
        UPDATE bgtasks_workers SET claim_short_at = now()
        WHERE worker_id = worker AND (claim_short_at IS NULL OR claim_short_at < now() - interval '1 second');
    ELSE
        UPDATE bgtasks_workers SET claim_short_at = NULL WHERE worker_id = worker AND claim_short_at IS NOT NULL;
    END IF;
END
$$;
COMMENT ON FUNCTION note_claim(text, integer, integer) IS
  'Worker: its claim asked for `asked` tasks and got `got`; under max_concurrent_tasks a short claim marks it waiting (bgtasks_workers.claim_short_at), a full one clears that.';
