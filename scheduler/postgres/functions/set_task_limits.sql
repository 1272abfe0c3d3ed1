-- Set (replace) the limits of a task, as set_queue_limits(); all NULL removes the row.
CREATE OR REPLACE FUNCTION {schema}.set_task_limits(
    task_name text, concurrency_limit integer DEFAULT NULL, rate_limit integer DEFAULT NULL,
    rate_period double precision DEFAULT 1, rate_burst integer DEFAULT 1
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM {schema}.check_limits(concurrency_limit, rate_limit, rate_period, rate_burst);
    IF task_name IS NULL OR length(task_name) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'task_name must be a text of 1 to 255 characters';
    END IF;
    IF concurrency_limit IS NULL AND rate_limit IS NULL THEN
        DELETE FROM {schema}.task_limits t WHERE t.task_name = set_task_limits.task_name;
        RETURN;
    END IF;
    INSERT INTO {schema}.task_limits AS t
        (task_name, concurrency_limit, rate_limit, rate_period, rate_burst)
    VALUES (set_task_limits.task_name, set_task_limits.concurrency_limit,
            set_task_limits.rate_limit, set_task_limits.rate_period,
            set_task_limits.rate_burst)
    ON CONFLICT ON CONSTRAINT task_limits_pkey DO UPDATE SET
        concurrency_limit = excluded.concurrency_limit, rate_limit = excluded.rate_limit,
        rate_period = excluded.rate_period, rate_burst = excluded.rate_burst,
        tokens = CASE WHEN (t.rate_limit, t.rate_period, t.rate_burst)
                           IS NOT DISTINCT FROM
                           (excluded.rate_limit, excluded.rate_period, excluded.rate_burst)
                      THEN t.tokens END,
        refilled_at = CASE WHEN (t.rate_limit, t.rate_period, t.rate_burst)
                                IS NOT DISTINCT FROM
                                (excluded.rate_limit, excluded.rate_period, excluded.rate_burst)
                           THEN t.refilled_at END,
        updated_at = now();
END
$$;
