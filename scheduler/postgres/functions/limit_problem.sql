-- Limit kinds, the SQL side. A kind is four functions in a file of its own,
-- limit_<kind>.sql (limit_concurrency.sql, limit_rate.sql), named after it:
--
--   limit_<kind>_problem(settings jsonb) -> text
--       why these settings cannot be enforced, NULL when they can;
--   limit_<kind>_room(settings jsonb, state jsonb, running bigint, at timestamptz) -> float8
--       how many jobs of the scope may start at `at` (its floor counts), `running` of its
--       jobs running fleet-wide; NULL: no bound;
--   limit_<kind>_spend(settings jsonb, state jsonb, started bigint, at timestamptz) -> jsonb
--       the state after `started` jobs started at `at` (the same state: nothing to record);
--   limit_<kind>_wait(settings jsonb, state jsonb, at timestamptz) -> float8
--       seconds until time alone gives room again, NULL when it has room or only
--       finishing jobs give it.
--
-- limit_problem(), limit_rooms(), limit_spend() and limit_wait() call a row's kind by name,
-- so the claim, set_limit() and the views name no kind. limit_problem() is asked first: it
-- also says when a row's kind has no functions (a row written for a newer release), and
-- the claim skips such a scope's work as it skips settings out of bounds.
CREATE OR REPLACE FUNCTION {schema}.limit_problem(kind text, settings jsonb) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text;
BEGIN
    IF kind IS NULL OR kind !~ '^[a-z][a-z0-9_]{0,39}$'
       OR to_regprocedure(format('{schema}.%I(jsonb)', 'limit_' || kind || '_problem')) IS NULL
       OR to_regprocedure(format('{schema}.%I(jsonb, jsonb, bigint, timestamptz)',
                                 'limit_' || kind || '_room')) IS NULL
       OR to_regprocedure(format('{schema}.%I(jsonb, jsonb, bigint, timestamptz)',
                                 'limit_' || kind || '_spend')) IS NULL
       OR to_regprocedure(format('{schema}.%I(jsonb, jsonb, timestamptz)',
                                 'limit_' || kind || '_wait')) IS NULL THEN
        RETURN format('no limit kind %L in this schema (no functions limit_%s_*): run the'
                      ' release that has it, or remove its rows (set_limit() with NULL'
                      ' settings)', kind, kind);
    END IF;
    EXECUTE format('SELECT {schema}.%I($1)', 'limit_' || kind || '_problem')
        INTO problem USING settings;
    RETURN problem;
EXCEPTION WHEN OTHERS THEN
    -- A kind's function that fails on some settings is a problem of that row alone.
    RETURN format('limit kind %L failed on these settings: %s', kind, SQLERRM);
END
$$;
