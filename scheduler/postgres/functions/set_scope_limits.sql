-- set_queue_limits() and set_task_limits(): the concurrency and rate limit rows of one
-- queue or task, both checked before either is written.
CREATE OR REPLACE FUNCTION {schema}.set_scope_limits(
    scope text, name text, concurrency_limit integer, rate_limit integer,
    rate_period double precision, rate_burst integer
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    concurrency jsonb := jsonb_build_object('concurrency_limit', concurrency_limit);
    -- rate_period as numeric (exact, whatever the session's extra_float_digits), or as
    -- text when JSON cannot hold it (NaN, infinities), which the rate kind refuses.
    rate jsonb := jsonb_build_object(
        'rate_limit', coalesce(rate_limit, 1),
        'rate_period', CASE WHEN rate_period::text IN ('NaN', 'Infinity', '-Infinity')
                            THEN to_jsonb(rate_period::text)
                            ELSE to_jsonb(rate_period::numeric) END,
        'rate_burst', rate_burst);
    problem text := coalesce(
        CASE WHEN concurrency_limit IS NOT NULL
             THEN {schema}.limit_problem('concurrency', concurrency) END,
        {schema}.limit_problem('rate', rate));
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = problem;
    END IF;
    PERFORM {schema}.set_limit(scope, name, 'concurrency',
                               CASE WHEN concurrency_limit IS NOT NULL THEN concurrency END);
    PERFORM {schema}.set_limit(scope, name, 'rate',
                               CASE WHEN rate_limit IS NOT NULL THEN rate END);
END
$$;
