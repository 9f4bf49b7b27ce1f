-- Back to 0007: the reaper without a grace period, heartbeats as plain UPDATEs, claims without a fair share.
DROP FUNCTION claim_share(text, integer, double precision, integer);
DROP FUNCTION note_claim(text, integer, integer);
ALTER TABLE bgtasks_workers DROP COLUMN claim_short_at;
DROP FUNCTION reap_expired_leases(integer, double precision);
DROP FUNCTION worker_heartbeat(text, double precision);
DROP TABLE lease_reaper;

CREATE FUNCTION reap_expired_leases(max_tasks integer DEFAULT 100) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t record;
    n integer := 0;
BEGIN
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
COMMENT ON FUNCTION reap_expired_leases(integer) IS
  'Take back tasks whose worker died: retried (counted) or failed past max_retries. Any worker runs it; safe to call at psql.';
