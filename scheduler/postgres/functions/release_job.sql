-- Give an attempt back without spending a budget (a graceful stop; the SQL worker
-- protocol): pending at once, or cancelled when a cancel was requested. Fenced; true when
-- it changed the job. One attempt of end_attempts(), which every outcome goes through.
CREATE OR REPLACE FUNCTION {schema}.release_job(
    worker_id uuid, job_id text, attempt integer, reason text DEFAULT NULL
) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM {schema}.end_attempts(ARRAY[$2], ARRAY[$1], ARRAY[$3], ARRAY['released'],
                                            errors => ARRAY[$4])
    )
$$;
