-- Record a success (the SQL worker protocol). Fenced: true only when this worker still held
-- this attempt. One attempt of end_attempts(), which every outcome goes through.
CREATE OR REPLACE FUNCTION {schema}.complete_job(worker_id uuid, job_id text, attempt integer)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM {schema}.end_attempts(ARRAY[$2], ARRAY[$1], ARRAY[$3], ARRAY['succeeded'])
    )
$$;
