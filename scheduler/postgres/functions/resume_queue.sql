-- Resume a paused queue. Returns whether it was paused. The row goes: `queues` holds only
-- pauses, and with neither a pause nor a limit anywhere the plain claim skips its checks
-- (claim_scope()).
CREATE OR REPLACE FUNCTION {schema}.resume_queue(queue text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (DELETE FROM {schema}.queues q WHERE q.queue = $1 RETURNING q.paused)
    SELECT coalesce((SELECT paused FROM gone), false)
$$;
