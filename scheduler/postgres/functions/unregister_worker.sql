-- A worker leaving cleanly: its running attempts go back to pending at once (no budget
-- spent; a requested cancel wins) and its row is deleted. Returns how many it released.
CREATE OR REPLACE FUNCTION {schema}.unregister_worker(worker_id uuid) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH held AS (
        SELECT j.job_id, j.attempts, j.claimed_at, j.started_at FROM {schema}.jobs j
        WHERE j.lease_owner = $1 AND j.status = 'running'
    ), released AS (
        UPDATE {schema}.jobs j SET
            status = CASE WHEN j.cancel_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
            finished_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE now() END,
            started_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE j.started_at END,
            lease_owner = NULL, last_error = 'released: its worker unregistered',
            updated_at = now()
        WHERE j.lease_owner = $1 AND j.status = 'running'
        RETURNING j.job_id, j.status
    ), history AS (
        INSERT INTO {schema}.job_attempts
            (job_id, attempt, worker_id, hostname, claimed_at, started_at, outcome, error)
        SELECT r.job_id, h.attempts, $1,
               (SELECT w.hostname FROM {schema}.workers w WHERE w.worker_id = $1),
               h.claimed_at, h.started_at,
               CASE WHEN r.status = 'cancelled' THEN 'cancelled' ELSE 'released' END,
               'released: its worker unregistered'
        FROM released r JOIN held h USING (job_id)
    ), gone AS (
        DELETE FROM {schema}.workers w WHERE w.worker_id = $1 RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;
