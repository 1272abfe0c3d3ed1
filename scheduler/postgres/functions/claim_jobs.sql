-- Take up to max_jobs due pending jobs of `task_names` (default: the worker's registered
-- tasks), highest priority then earliest due first, skipping rows others are claiming;
-- each becomes running under this worker with attempt = attempts + 1. Raises 55000 when
-- the worker's lease is not live (checked in this transaction, by the database clock).
-- Queue- and limit-aware (0007): every claim of a foreign worker goes through
-- claim_flow_jobs(). `queue_names` defaults to the 'default' queue.
CREATE OR REPLACE FUNCTION {schema}.claim_jobs(
    worker_id uuid, task_names text[] DEFAULT NULL, max_jobs integer DEFAULT 1,
    queue_names text[] DEFAULT ARRAY['default']
) RETURNS TABLE (
    job_id text, attempt integer, task_name text, args jsonb, kwargs jsonb,
    priority smallint, max_retries integer, failures integer,
    timeout_seconds double precision, execution_time timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    registered text[];
BEGIN
    IF max_jobs IS NULL OR max_jobs < 1 OR max_jobs > 1000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'max_jobs must be between 1 and 1000, got %s', coalesce(max_jobs::text, 'NULL'));
    END IF;
    IF queue_names IS NULL OR cardinality(queue_names) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'queue_names must name at least one queue (the default is ''default'')';
    END IF;
    SELECT w.tasks INTO registered FROM {schema}.workers w
    WHERE w.worker_id = claim_jobs.worker_id AND w.lease_expires_at > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'worker %s has no live lease (never registered, expired or unregistered): stop'
            ' the jobs it runs and register a new worker', claim_jobs.worker_id);
    END IF;
    -- The join reads priority and due time, which a claim does not change (this statement's
    -- snapshot predates the claim); everything else comes from the claim itself.
    RETURN QUERY
    SELECT c.job_id, c.attempts, c.task_name, c.args::jsonb, c.kwargs::jsonb, j.priority,
           c.max_retries, c.failures, c.timeout_seconds, j.execution_time
    FROM {schema}.claim_flow_jobs(claim_jobs.worker_id,
                                  coalesce(claim_jobs.task_names, registered),
                                  claim_jobs.queue_names, claim_jobs.max_jobs) AS c
    JOIN {schema}.jobs j ON j.job_id = c.job_id
    WHERE c.kind = 'claimed'
    ORDER BY j.priority DESC, j.execution_time;
END
$$;
