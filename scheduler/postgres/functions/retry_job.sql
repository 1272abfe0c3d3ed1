-- Run a failed or cancelled job again: pending at run_at, after delay, or now. Its budgets
-- start afresh (failures and lost_leases to 0, so it gets max_retries and orphan_retries
-- again, like REPLACE); attempts keep counting (attempt numbers never repeat); last_error
-- stays until the next attempt ends, so the reason of the retry remains visible.
-- Returns 'pending'. P0002 for an unknown job, 55000 for any other status.
-- Aware of dependencies (0006): a retried job whose dependencies have not all
-- succeeded waits for them again ('blocked'); one whose dependency failed or was cancelled
-- is refused (55000): retry that dependency first. The edges are locked before the job,
-- in the order settle_dependants() takes them, so a dependency finishing meanwhile is
-- counted exactly once.
CREATE OR REPLACE FUNCTION {schema}.retry_job(
    job_id text, run_at timestamptz DEFAULT NULL, delay interval DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    current_status text;
    unmet integer;
    broken text;
BEGIN
    IF run_at IS NOT NULL AND delay IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pass either run_at or delay, not both';
    END IF;
    IF run_at IS NOT NULL AND NOT (run_at >= '0001-01-02 00:00:00+00'
                                   AND run_at <= '9999-12-30 00:00:00+00') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'run_at must lie between 0001-01-02 and 9999-12-30 UTC, got %s', run_at);
    END IF;
    IF delay < interval '0' OR extract(epoch FROM delay) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('delay must be from 0 to 1000 years, got %s', delay);
    END IF;
    PERFORM 1 FROM {schema}.job_dependencies e WHERE e.job_id = retry_job.job_id
    ORDER BY e.depends_on FOR UPDATE;
    SELECT j.status INTO current_status FROM {schema}.jobs j
    WHERE j.job_id = retry_job.job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format(
            'no job %L (unknown, or pruned after the retention period)', retry_job.job_id);
    END IF;
    IF current_status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'job %L is %s; only failed or cancelled jobs can be retried (to run a job again'
            ' after it succeeded, schedule it with conflict => ''replace'')',
            retry_job.job_id, current_status);
    END IF;
    SELECT d.job_id INTO broken
    FROM {schema}.job_dependencies e JOIN {schema}.jobs d ON d.job_id = e.depends_on
    WHERE e.job_id = retry_job.job_id AND NOT e.satisfied
      AND d.status IN ('failed', 'cancelled')
    ORDER BY d.job_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'job %L depends on %L, which did not succeed; retry %L first, then this job'
            ' (it then waits for it)', retry_job.job_id, broken, broken);
    END IF;
    SELECT count(*) INTO unmet FROM {schema}.job_dependencies e
    WHERE e.job_id = retry_job.job_id AND NOT e.satisfied;
    UPDATE {schema}.jobs j SET
        status = CASE WHEN unmet > 0 THEN 'blocked' ELSE 'pending' END, blocked_by = unmet,
        failures = 0, lost_leases = 0, cancel_requested_at = NULL,
        execution_time = coalesce(retry_job.run_at, now() + coalesce(retry_job.delay, '0')),
        started_at = NULL, finished_at = NULL, updated_at = now()
    WHERE j.job_id = retry_job.job_id;
    RETURN CASE WHEN unmet > 0 THEN 'blocked' ELSE 'pending' END;
END
$$;
