CREATE OR REPLACE FUNCTION {schema}.check_limits(
    concurrency_limit integer, rate_limit integer, rate_period double precision,
    rate_burst integer
) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text := {schema}.limits_problem(concurrency_limit, rate_limit, rate_period,
                                            rate_burst);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = problem;
    END IF;
END
$$;
