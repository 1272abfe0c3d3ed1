-- Why a limit row (of queues or task_limits) cannot be enforced, or NULL when it is in
-- bounds. The claims skip the work such a row governs instead of computing with it;
-- check_limits() refuses it.
CREATE OR REPLACE FUNCTION {schema}.limits_problem(
    concurrency_limit integer, rate_limit integer, rate_period double precision,
    rate_burst integer
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN $1 < 1 THEN format(
            'concurrency_limit must be NULL (no limit) or an integer from 1 to 2147483647,'
            ' got %s (to stop a queue, pause it)', $1)
        WHEN $2 < 1 THEN format(
            'rate_limit must be NULL (no limit) or an integer from 1 to 2147483647, got %s', $2)
        WHEN $4 IS NULL OR $4 < 1 THEN format(
            'rate_burst must be an integer from 1 to 2147483647, got %s',
            coalesce($4::text, 'NULL'))
        -- Written so NaN fails too (NaN sorts above every number).
        WHEN $3 IS NULL OR NOT ($3 >= 0.001 AND $3 <= 31557600000) THEN format(
            'rate_period must be seconds from 0.001 (1 ms) to 31557600000 (1000 years),'
            ' got %s', coalesce($3::text, 'NULL'))
    END
$$;
