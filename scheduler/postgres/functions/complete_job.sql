-- Record a success. Fenced: true only when this worker still holds this attempt.
CREATE OR REPLACE FUNCTION {schema}.complete_job(worker_id uuid, job_id text, attempt integer)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH done AS (
        UPDATE {schema}.jobs j SET
            status = 'succeeded', lease_owner = NULL, last_error = NULL,
            finished_at = now(), updated_at = now()
        WHERE j.job_id = $2 AND j.lease_owner = $1 AND j.attempts = $3 AND j.status = 'running'
        RETURNING j.job_id, j.attempts, j.claimed_at, j.started_at
    ), history AS (
        INSERT INTO {schema}.job_attempts
            (job_id, attempt, worker_id, hostname, claimed_at, started_at, outcome)
        SELECT d.job_id, d.attempts, $1,
               (SELECT w.hostname FROM {schema}.workers w WHERE w.worker_id = $1),
               d.claimed_at, d.started_at, 'succeeded'
        FROM done d
    )
    SELECT EXISTS (SELECT 1 FROM done)
$$;
