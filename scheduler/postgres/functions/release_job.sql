-- Give an attempt back without spending a budget (a graceful stop): pending at once, or
-- cancelled when a cancel was requested. Fenced; true when it changed the job.
CREATE OR REPLACE FUNCTION {schema}.release_job(
    worker_id uuid, job_id text, attempt integer, reason text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    held {schema}.jobs%ROWTYPE;
    new_status text;
BEGIN
    SELECT j.* INTO held FROM {schema}.jobs j
    WHERE j.job_id = release_job.job_id AND j.lease_owner = release_job.worker_id
      AND j.attempts = release_job.attempt AND j.status = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE {schema}.jobs j SET
        status = CASE WHEN j.cancel_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE now() END,
        started_at = CASE WHEN j.cancel_requested_at IS NULL THEN NULL ELSE j.started_at END,
        lease_owner = NULL, last_error = left(release_job.reason, 8000), updated_at = now()
    WHERE j.job_id = release_job.job_id
    RETURNING j.status INTO new_status;
    PERFORM {schema}.record_attempt(held.job_id, held.attempts, release_job.worker_id,
                                    CASE WHEN new_status = 'cancelled' THEN 'cancelled'
                                         ELSE 'released' END,
                                    left(release_job.reason, 8000), held.claimed_at,
                                    held.started_at);
    RETURN true;
END
$$;
