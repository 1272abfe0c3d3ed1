-- Why a limit's settings are not a JSON object of the kind's `known` keys (a misspelt key
-- would otherwise be stored and ignored), NULL when they are; for the kinds' problem
-- functions.
CREATE OR REPLACE FUNCTION {schema}.limit_keys_problem(settings jsonb, known text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    unknown text;
BEGIN
    IF jsonb_typeof(settings) IS DISTINCT FROM 'object' THEN
        RETURN format('settings must be a JSON object of %s, got %s',
                      array_to_string(known, ', '), coalesce(settings::text, 'nothing'));
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO unknown
    FROM jsonb_object_keys(settings) AS k WHERE k <> ALL (known);
    IF unknown IS NOT NULL THEN
        RETURN format('unknown settings %s (this kind takes %s)', unknown,
                      array_to_string(known, ', '));
    END IF;
    RETURN NULL;
END
$$;
