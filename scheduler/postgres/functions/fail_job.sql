-- Record a failed attempt: it spends one of max_retries, exactly like the Python engine.
-- Back to pending at retry_at (default now) while failures stay within max_retries and
-- nobody asked to cancel, else failed. Returns the new status, or NULL when fenced (a
-- stale token: nothing changed). The error is kept, cut to 8,000 characters.
CREATE OR REPLACE FUNCTION {schema}.fail_job(
    worker_id uuid, job_id text, attempt integer, error text,
    retry_at timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    new_status text;
    ended {schema}.jobs%ROWTYPE;
BEGIN
    IF retry_at IS NOT NULL AND NOT (retry_at >= '0001-01-02 00:00:00+00'
                                     AND retry_at <= '9999-12-30 00:00:00+00') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'retry_at must lie between 0001-01-02 and 9999-12-30 UTC, got %s', retry_at);
    END IF;
    UPDATE {schema}.jobs j SET
        failures = j.failures + 1,
        status = CASE WHEN j.failures + 1 <= j.max_retries AND j.cancel_requested_at IS NULL
                      THEN 'pending' ELSE 'failed' END,
        execution_time = CASE WHEN j.failures + 1 <= j.max_retries
                                   AND j.cancel_requested_at IS NULL
                              THEN coalesce(fail_job.retry_at, now())
                              ELSE j.execution_time END,
        finished_at = CASE WHEN j.failures + 1 <= j.max_retries AND j.cancel_requested_at IS NULL
                           THEN NULL ELSE now() END,
        lease_owner = NULL, last_error = left(fail_job.error, 8000), updated_at = now()
    WHERE j.job_id = fail_job.job_id AND j.lease_owner = fail_job.worker_id
      AND j.attempts = fail_job.attempt AND j.status = 'running'
    RETURNING j.* INTO ended;
    IF ended.job_id IS NOT NULL THEN
        PERFORM {schema}.record_attempt(ended.job_id, ended.attempts, fail_job.worker_id,
                                        'failed', ended.last_error, ended.claimed_at,
                                        ended.started_at);
    END IF;
    RETURN ended.status;
END
$$;
