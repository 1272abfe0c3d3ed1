-- Why a setting meant to be a count (an integer from 1 to 2**31 - 1, written as one: 5,
-- not 5.0) is not one, NULL when it is; for the kinds' problem functions.
CREATE OR REPLACE FUNCTION {schema}.limit_count_problem(name text, value jsonb, hint text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(value) = 'number' THEN  -- (a cast of another JSON type would raise)
        IF value::text ~ '^[0-9]{1,10}$' AND value::numeric BETWEEN 1 AND 2147483647 THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN format('%s must be an integer from 1 to 2147483647, got %s%s', name,
                  coalesce(value::text, 'nothing'), coalesce('; ' || hint, ''));
END
$$;
