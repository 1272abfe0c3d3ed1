-- How many jobs of each scope one kind's limits let start now (limit_<kind>_room(); see
-- limit_problem.sql), for the claim: one statement for all the limits of a kind, its
-- functions named in it, each limit's settings checked before its room is asked. An
-- element is NULL when that limit sets no bound, and NaN when it cannot say (settings out
-- of bounds, a kind without functions in the schema, a function that failed or answered
-- NaN), which the claim treats as a problem of that limit alone, asking limit_problem()
-- why: when the statement fails, each limit is asked on its own.
CREATE OR REPLACE FUNCTION {schema}.limit_rooms(
    kind text, settings jsonb[], states jsonb[], running bigint[], at timestamptz
) RETURNS double precision[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem_function text := 'limit_' || kind || '_problem';
    room_function text := 'limit_' || kind || '_room';
    rooms double precision[];
    room double precision;
BEGIN
    IF kind IS NULL OR kind !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RETURN array_fill('NaN'::float8, ARRAY[cardinality(settings)]);
    END IF;
    BEGIN
        EXECUTE format(
            'SELECT array_agg(CASE WHEN {schema}.%I(u.s) IS NULL'
            ' THEN {schema}.%I(u.s, u.st, u.r, $4) ELSE ''NaN'' END ORDER BY u.i)'
            ' FROM unnest($1, $2, $3) WITH ORDINALITY AS u(s, st, r, i)',
            problem_function, room_function)
            INTO rooms USING settings, states, running, at;
        RETURN rooms;
    EXCEPTION WHEN OTHERS THEN
        NULL;  -- some limit of the kind failed: ask each on its own, below
    END;
    rooms := '{}';
    FOR i IN 1 .. coalesce(cardinality(settings), 0) LOOP
        BEGIN
            EXECUTE format('SELECT CASE WHEN {schema}.%I($1) IS NULL'
                           ' THEN {schema}.%I($1, $2, $3, $4) ELSE ''NaN'' END',
                           problem_function, room_function)
                INTO room USING settings[i], states[i], running[i], at;
        EXCEPTION WHEN OTHERS THEN
            room := 'NaN';
        END;
        rooms := rooms || room;
    END LOOP;
    RETURN rooms;
END
$$;
