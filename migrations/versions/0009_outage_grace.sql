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
