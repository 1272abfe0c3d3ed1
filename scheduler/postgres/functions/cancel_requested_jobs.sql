-- The attempts this worker holds whose cancellation was requested: stop them and record
-- the outcome (release_job() records a requested cancel as cancelled).
CREATE OR REPLACE FUNCTION {schema}.cancel_requested_jobs(worker_id uuid)
RETURNS TABLE (job_id text, attempt integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.job_id, j.attempts FROM {schema}.jobs j
    WHERE j.lease_owner = $1 AND j.status = 'running' AND j.cancel_requested_at IS NOT NULL
    ORDER BY j.job_id
$$;
