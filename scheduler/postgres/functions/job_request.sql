CREATE OR REPLACE FUNCTION {schema}.job_request(
    task_name   text,
    args        jsonb DEFAULT '[]',
    kwargs      jsonb DEFAULT '{}',
    run_at      timestamptz DEFAULT NULL,
    delay       interval DEFAULT NULL,
    job_id      text DEFAULT NULL,
    priority    integer DEFAULT 5,
    max_retries integer DEFAULT 0,
    timeout     interval DEFAULT NULL,
    queue       text DEFAULT 'default',
    lock_key    text DEFAULT NULL,
    unique_key  text DEFAULT NULL
) RETURNS {schema}.job_request
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)::{schema}.job_request
$$;
