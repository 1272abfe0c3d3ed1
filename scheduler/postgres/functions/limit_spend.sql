-- A limit's state after jobs started under it (limit_<kind>_spend(); see limit_problem.sql).
CREATE OR REPLACE FUNCTION {schema}.limit_spend(
    kind text, settings jsonb, state jsonb, started bigint, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    spent jsonb;
BEGIN
    EXECUTE format('SELECT {schema}.%I($1, $2, $3, $4)', 'limit_' || kind || '_spend')
        INTO spent USING settings, state, started, at;
    RETURN spent;
END
$$;
