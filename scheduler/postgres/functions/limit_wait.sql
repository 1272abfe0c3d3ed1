-- Seconds until time gives a limit room again (limit_<kind>_wait(); see limit_problem.sql),
-- at most 1000 years; NULL when the kind cannot say (the replica then looks again at its
-- next poll).
CREATE OR REPLACE FUNCTION {schema}.limit_wait(
    kind text, settings jsonb, state jsonb, at timestamptz
) RETURNS double precision
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    wait double precision;
BEGIN
    EXECUTE format('SELECT {schema}.%I($1, $2, $3)', 'limit_' || kind || '_wait')
        INTO wait USING settings, state, at;
    RETURN CASE WHEN wait = 'NaN' OR wait < 0 THEN NULL ELSE least(wait, 31557600000) END;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;
