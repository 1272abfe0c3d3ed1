-- Set (replace) the concurrency and rate limits of a task, as set_queue_limits().
CREATE OR REPLACE FUNCTION {schema}.set_task_limits(
    task_name text, concurrency_limit integer DEFAULT NULL, rate_limit integer DEFAULT NULL,
    rate_period double precision DEFAULT 1, rate_burst integer DEFAULT 1
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT {schema}.set_scope_limits('task', $1, $2, $3, $4, $5)
$$;
