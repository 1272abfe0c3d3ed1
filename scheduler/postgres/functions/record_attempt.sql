-- One history row for an attempt a worker function ended (read before the job row changes).
CREATE OR REPLACE FUNCTION {schema}.record_attempt(
    job_id text, attempt integer, worker_id uuid, outcome text, error text,
    claimed_at timestamptz, started_at timestamptz
) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO {schema}.job_attempts
        (job_id, attempt, worker_id, hostname, claimed_at, started_at, outcome, error)
    SELECT $1, $2, $3, (SELECT w.hostname FROM {schema}.workers w WHERE w.worker_id = $3),
           $6, $7, $4, $5
    ON CONFLICT DO NOTHING
$$;
