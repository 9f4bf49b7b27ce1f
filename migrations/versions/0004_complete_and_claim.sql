-- One round trip for a busy worker: finish the tasks it completed and claim new ones for the threads they
-- freed, in one transaction (one commit). Under a global limit the claim sees the completions already.

CREATE FUNCTION complete_and_claim(task_ids text[], claimed_attempts integer[], results jsonb[], worker text,
                                   max_tasks integer, lease_seconds double precision)
RETURNS SETOF background_tasks LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(task_ids) > 0 THEN
        PERFORM complete_tasks(task_ids, claimed_attempts, results);
    END IF;
    IF max_tasks > 0 THEN
        RETURN QUERY SELECT * FROM claim_tasks(worker, max_tasks, lease_seconds);
    END IF;
END
$$;
COMMENT ON FUNCTION complete_and_claim(text[], integer[], jsonb[], text, integer, double precision) IS
  'Worker: complete_tasks() then claim_tasks() in one transaction (a busy worker''s one round trip per batch).';
