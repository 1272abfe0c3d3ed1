CREATE OR REPLACE FUNCTION {schema}.check_limits(
    concurrency_limit integer, rate_limit integer, rate_period double precision,
    rate_burst integer
) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF concurrency_limit < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'concurrency_limit must be >= 1 (NULL for none; to stop a queue, pause it), got %s',
            concurrency_limit);
    END IF;
    IF rate_limit < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'rate_limit must be >= 1 (NULL for none), got %s', rate_limit);
    END IF;
    IF rate_period IS NULL OR NOT rate_period > 0 OR rate_period IN ('Infinity', 'NaN') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'rate_period must be a finite number of seconds > 0, got %s',
            coalesce(rate_period::text, 'NULL'));
    END IF;
    IF rate_burst IS NULL OR rate_burst < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'rate_burst must be >= 1, got %s', coalesce(rate_burst::text, 'NULL'));
    END IF;
END
$$;
