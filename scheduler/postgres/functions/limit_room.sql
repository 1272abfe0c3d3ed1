-- How many jobs of a scope a limit lets start (limit_<kind>_room(); see limit_problem.sql).
CREATE OR REPLACE FUNCTION {schema}.limit_room(
    kind text, settings jsonb, state jsonb, running bigint, at timestamptz
) RETURNS double precision
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    room double precision;
BEGIN
    EXECUTE format('SELECT {schema}.%I($1, $2, $3, $4)', 'limit_' || kind || '_room')
        INTO room USING settings, state, running, at;
    RETURN room;
END
$$;
