-- Retry in bulk: up to max_jobs failed jobs of `task_name` (NULL: every task) that finished
-- in [since, until) (default: ever, until now), oldest first, each exactly as retry_job()
-- does (fresh budgets, attempts keep counting, pending at run_at or now); returns their ids.
-- Rows another transaction holds are skipped. Call it again until it returns fewer than
-- max_jobs: with a fixed `until`, jobs that fail again meanwhile are not picked up twice.
-- It skips a failed job whose unique key another unfinished job has
-- taken since, or that an older failed job of the same key retried in this call took:
-- retrying it would give the key two holders (retry_job() refuses that: 23505).
CREATE OR REPLACE FUNCTION {schema}.retry_failed_jobs(
    task_name text DEFAULT NULL, since timestamptz DEFAULT NULL,
    until timestamptz DEFAULT NULL, run_at timestamptz DEFAULT NULL,
    max_jobs integer DEFAULT 1000
) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    found_id text;
    found_key text;
    keys_taken text[] := '{}';
BEGIN
    IF max_jobs IS NULL OR max_jobs < 1 OR max_jobs > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'max_jobs must be between 1 and 100000, got %s', coalesce(max_jobs::text, 'NULL'));
    END IF;
    FOR found_id, found_key IN
        SELECT j.job_id, j.unique_key FROM {schema}.jobs j
        WHERE j.status = 'failed'
          AND (task_name IS NULL OR j.task_name = task_name)
          AND j.finished_at >= coalesce(since, '-infinity')
          AND j.finished_at < coalesce(until, now())
          AND (j.unique_key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM {schema}.jobs h
                   WHERE h.unique_key = j.unique_key
                     AND h.status IN ('pending', 'blocked', 'running')))
        ORDER BY j.finished_at
        LIMIT max_jobs
        FOR UPDATE OF j SKIP LOCKED
    LOOP
        IF found_key = ANY (keys_taken) THEN
            CONTINUE;  -- an older failed job of this key was just retried: it holds the key
        END IF;
        keys_taken := keys_taken || found_key;
        PERFORM {schema}.retry_job(found_id, run_at);
        RETURN NEXT found_id;
    END LOOP;
END
$$;
