-- Limit kind 'concurrency' (see limit_problem.sql): at most `concurrency_limit` jobs of the
-- scope run at once, fleet-wide. Settings: {"concurrency_limit": n}. No state: the
-- running jobs are the count, an orphaned attempt included until it leaves 'running'.
CREATE OR REPLACE FUNCTION {schema}.limit_concurrency_problem(settings jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
        {schema}.limit_keys_problem($1, ARRAY['concurrency_limit']),
        {schema}.limit_count_problem('concurrency_limit', $1 -> 'concurrency_limit',
                                     'to stop a queue, pause it'))
$$;

CREATE OR REPLACE FUNCTION {schema}.limit_concurrency_room(
    settings jsonb, state jsonb, running bigint, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT (($1 ->> 'concurrency_limit')::bigint - $3)::float8
$$;

CREATE OR REPLACE FUNCTION {schema}.limit_concurrency_spend(
    settings jsonb, state jsonb, started bigint, at timestamptz
) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT $2
$$;

-- Only a finishing job frees a slot: time alone never does.
CREATE OR REPLACE FUNCTION {schema}.limit_concurrency_wait(
    settings jsonb, state jsonb, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT NULL::float8
$$;
