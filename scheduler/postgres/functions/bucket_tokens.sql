-- The tokens in a bucket at `at` (NULL when there is no rate limit), computed so that no
-- stored value can make it fail: out-of-range limits give 0 (the claim skips such rows
-- anyway), tokens are clamped to [0, burst] (NaN and infinities included), an infinite
-- refilled_at counts as a full bucket, and the refill is capped before it is multiplied.
CREATE OR REPLACE FUNCTION {schema}.bucket_tokens(
    tokens double precision, refilled_at timestamptz, rate_limit integer,
    rate_period double precision, rate_burst integer, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN $3 IS NULL THEN NULL
        WHEN {schema}.limits_problem(NULL, $3, $4, $5) IS NOT NULL THEN 0
        WHEN $2 IS NULL OR NOT isfinite($2) OR NOT isfinite($6) THEN $5::float8
        ELSE least($5::float8,
                   least($5::float8, greatest(coalesce($1, $5::float8), 0))
                   + least(greatest(extract(epoch FROM $6)::float8
                                    - extract(epoch FROM $2)::float8, 0) / $4,
                           $5::float8) * $3)
    END
$$;
