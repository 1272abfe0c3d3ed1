-- Enqueue one job; returns its id. With neither run_at nor delay it is due now (the
-- database's now). See schedule_jobs() for `conflict`.
-- Enqueue one job; returns its id, or the id of the job holding its unique key (see
-- schedule_jobs()). The parameters of 0005 keep their positions; the new ones follow.
CREATE OR REPLACE FUNCTION {schema}.schedule_job(
    task_name   text,
    args        jsonb DEFAULT '[]',
    kwargs      jsonb DEFAULT '{}',
    run_at      timestamptz DEFAULT NULL,
    delay       interval DEFAULT NULL,
    job_id      text DEFAULT NULL,
    priority    integer DEFAULT 5,
    max_retries integer DEFAULT 0,
    timeout     interval DEFAULT NULL,
    conflict    text DEFAULT 'raise',
    queue       text DEFAULT 'default',
    lock_key    text DEFAULT NULL,
    unique_key  text DEFAULT NULL
) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT ({schema}.schedule_jobs(
        ARRAY[ROW($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12, $13)::{schema}.job_request],
        $10))[1]
$$;
