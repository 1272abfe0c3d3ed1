-- A limit's state after jobs started under it (limit_<kind>_spend(); see limit_problem.sql).
-- Asked only after limit_rooms() answered for the same settings and state, so a shipped
-- kind does not fail here; a kind's function that does anyway keeps the state as it was
-- (with a WARNING in the server log) rather than fail every claim of the fleet.
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
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'limit kind % could not record % starts: %', kind, started, SQLERRM;
    RETURN state;
END
$$;
