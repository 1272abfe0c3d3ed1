-- Make `job_id` (a fresh job, in the transaction that scheduled it) wait for `depends_on`.
-- Each dependency is locked, so one finishing concurrently is seen either finished here or
-- as having this dependant there. Already succeeded ones count as met; one already failed
-- or cancelled cancels the job at once. Returns the job's status: 'pending' (all met),
-- 'blocked' or 'cancelled'. P0002 names an unknown dependency; 55000 if the job is not
-- fresh (claimed before, already has dependencies, or others depend on it).
CREATE OR REPLACE FUNCTION {schema}.add_dependencies(job_id text, depends_on text[]) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    wanted text[];
    missing text;
    job {schema}.jobs%ROWTYPE;
    unmet integer;
    ended record;
BEGIN
    IF depends_on IS NULL OR cardinality(depends_on) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'depends_on must name at least one job';
    END IF;
    SELECT array_agg(DISTINCT d ORDER BY d) INTO wanted FROM unnest(depends_on) AS d;
    IF job_id = ANY (wanted) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('job %L cannot depend on itself', job_id);
    END IF;
    SELECT j.* INTO job FROM {schema}.jobs j WHERE j.job_id = add_dependencies.job_id
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format('no job %L', job_id);
    END IF;
    -- In id order, so two producers never lock the same jobs in opposite orders.
    PERFORM 1 FROM {schema}.jobs j WHERE j.job_id = ANY (wanted)
    ORDER BY j.job_id FOR NO KEY UPDATE;
    SELECT w INTO missing FROM unnest(wanted) AS w
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.job_id = w) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format(
            'job %L depends on %L, which does not exist (unknown, or pruned after the'
            ' retention period); schedule the dependencies first', job_id, missing);
    END IF;
    IF job.status <> 'pending' OR job.attempts > 0 OR job.has_dependants
       OR EXISTS (SELECT 1 FROM {schema}.job_dependencies e WHERE e.job_id = job.job_id) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format(
            'job %L is not fresh (%s, %s attempts%s): dependencies are given when a job is'
            ' scheduled, in the same transaction', job_id, job.status, job.attempts,
            CASE WHEN job.has_dependants THEN ', others depend on it' ELSE '' END);
    END IF;
    UPDATE {schema}.jobs j SET has_dependants = true
    WHERE j.job_id = ANY (wanted) AND NOT j.has_dependants;
    INSERT INTO {schema}.job_dependencies (job_id, depends_on, satisfied)
    SELECT job.job_id, j.job_id, j.status = 'succeeded'
    FROM {schema}.jobs j WHERE j.job_id = ANY (wanted);
    SELECT j.job_id, j.status INTO ended FROM {schema}.jobs j
    WHERE j.job_id = ANY (wanted) AND j.status IN ('failed', 'cancelled')
    ORDER BY j.job_id LIMIT 1;
    IF FOUND THEN
        UPDATE {schema}.jobs j SET status = 'cancelled', finished_at = now(), updated_at = now(),
            last_error = format('cancelled: dependency %L %s', ended.job_id,
                                CASE ended.status WHEN 'failed' THEN 'failed'
                                                  ELSE 'was cancelled' END)
        WHERE j.job_id = job.job_id;
        RETURN 'cancelled';
    END IF;
    SELECT count(*) INTO unmet FROM {schema}.jobs j
    WHERE j.job_id = ANY (wanted) AND j.status <> 'succeeded';
    IF unmet > 0 THEN
        UPDATE {schema}.jobs j SET status = 'blocked', blocked_by = unmet, updated_at = now()
        WHERE j.job_id = job.job_id;
        RETURN 'blocked';
    END IF;
    RETURN 'pending';
END
$$;
