-- A worker leaving cleanly: its running attempts go back to pending at once (no budget
-- spent; a requested cancel wins) and its row is deleted. Returns how many it released.
-- The attempts end as `released` through end_attempts(), which writes every history row.
CREATE OR REPLACE FUNCTION {schema}.unregister_worker(worker_id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    released integer;
BEGIN
    WITH held AS MATERIALIZED (
        SELECT j.job_id, j.attempts FROM {schema}.jobs j
        WHERE j.lease_owner = $1 AND j.status = 'running'
    )
    SELECT count(*)::integer INTO released
    FROM {schema}.end_attempts(
        ARRAY(SELECT h.job_id FROM held h ORDER BY h.job_id),
        array_fill($1, ARRAY[(SELECT count(*)::integer FROM held)]),
        ARRAY(SELECT h.attempts FROM held h ORDER BY h.job_id),
        array_fill('released'::text, ARRAY[(SELECT count(*)::integer FROM held)]),
        errors => array_fill('released: its worker unregistered'::text,
                             ARRAY[(SELECT count(*)::integer FROM held)]));
    DELETE FROM {schema}.workers w WHERE w.worker_id = $1;
    RETURN released;
END
$$;
