-- Limit kind 'rate' (see limit_problem.sql): at most `rate_limit` starts per `rate_period`
-- seconds on average, `rate_burst` of them at once: a token bucket of rate_burst tokens
-- refilled at rate_limit / rate_period per second, each start taking one. Settings:
-- {"rate_limit": n, "rate_period": seconds, "rate_burst": n}. State: {"tokens": t,
-- "refilled_at": epoch seconds}; none means a full bucket.
--
-- Bounds: counts from 1 to 2**31 - 1, rate_period from 1 ms to 1000 years, so every
-- refill, wait and token count is a finite float8 far from overflow.
CREATE OR REPLACE FUNCTION {schema}.limit_rate_problem(settings jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    period jsonb := settings -> 'rate_period';
BEGIN
    RETURN coalesce(
        {schema}.limit_keys_problem(settings, ARRAY['rate_limit', 'rate_period', 'rate_burst']),
        {schema}.limit_count_problem('rate_limit', settings -> 'rate_limit', NULL),
        {schema}.limit_count_problem('rate_burst', settings -> 'rate_burst', NULL),
        CASE WHEN jsonb_typeof(period) IS DISTINCT FROM 'number'
                  OR NOT (period::numeric >= 0.001 AND period::numeric <= 31557600000)
             THEN format('rate_period must be seconds from 0.001 (1 ms) to 31557600000'
                         ' (1000 years), got %s', coalesce(period::text, 'nothing')) END);
END
$$;

-- The tokens in the bucket at `at`: what it held when last spent (clamped to [0, burst]),
-- refilled since, at most rate_burst; a state without two numbers, or with a refill time
-- no clock reads (written by hand), counts as a full bucket.
CREATE OR REPLACE FUNCTION {schema}.limit_rate_tokens(
    settings jsonb, state jsonb, at timestamptz
) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    burst double precision := (settings ->> 'rate_burst')::float8;
    tokens double precision;
    refilled_at double precision;
BEGIN
    IF jsonb_typeof(state -> 'tokens') IS DISTINCT FROM 'number'
       OR jsonb_typeof(state -> 'refilled_at') IS DISTINCT FROM 'number' OR NOT isfinite(at)
    THEN
        RETURN burst;
    END IF;
    -- (bounded as numeric first, so the casts below cannot overflow whatever was written)
    IF abs((state ->> 'refilled_at')::numeric) > 1e12 THEN
        RETURN burst;
    END IF;
    tokens := least(greatest((state ->> 'tokens')::numeric, 0), burst::numeric)::float8;
    refilled_at := (state ->> 'refilled_at')::float8;
    RETURN least(burst,
                 tokens + least(greatest(extract(epoch FROM at)::float8 - refilled_at, 0)
                                / (settings ->> 'rate_period')::float8, burst)
                          * (settings ->> 'rate_limit')::float8);
END
$$;

CREATE OR REPLACE FUNCTION {schema}.limit_rate_room(
    settings jsonb, state jsonb, running bigint, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT {schema}.limit_rate_tokens($1, $2, $4)
$$;

CREATE OR REPLACE FUNCTION {schema}.limit_rate_spend(
    settings jsonb, state jsonb, started bigint, at timestamptz
) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    -- As numeric: a float8 would be written by float8out, which the session's
    -- extra_float_digits can round.
    SELECT jsonb_build_object('tokens', ({schema}.limit_rate_tokens($1, $2, $4) - $3)::numeric,
                              'refilled_at', trim_scale(extract(epoch FROM $4)))
$$;

CREATE OR REPLACE FUNCTION {schema}.limit_rate_wait(
    settings jsonb, state jsonb, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN t.tokens < 1
                THEN (1 - t.tokens) * ($1 ->> 'rate_period')::float8
                     / ($1 ->> 'rate_limit')::float8 END
    FROM (SELECT {schema}.limit_rate_tokens($1, $2, $3) AS tokens) t
$$;
