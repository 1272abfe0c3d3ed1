-- Record a failed attempt (the SQL worker protocol): it spends one of max_retries, exactly
-- like the Python engine. Back to pending at retry_at (default now) while failures stay
-- within max_retries and nobody asked to cancel, else failed. Returns the new status, or
-- NULL when fenced (a stale token: nothing changed). The error is kept, cut to 8,000
-- characters. One attempt of end_attempts(), which every outcome goes through.
CREATE OR REPLACE FUNCTION {schema}.fail_job(
    worker_id uuid, job_id text, attempt integer, error text,
    retry_at timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF retry_at IS NOT NULL AND NOT (retry_at >= '0001-01-02 00:00:00+00'
                                     AND retry_at <= '9999-12-30 00:00:00+00') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'retry_at must lie between 0001-01-02 and 9999-12-30 UTC, got %s', retry_at);
    END IF;
    RETURN (SELECT e.status FROM {schema}.end_attempts(
        ARRAY[fail_job.job_id], ARRAY[fail_job.worker_id], ARRAY[fail_job.attempt],
        ARRAY['failed'], errors => ARRAY[fail_job.error],
        run_ats => ARRAY[coalesce(fail_job.retry_at, now())]
    ) e);
END
$$;
