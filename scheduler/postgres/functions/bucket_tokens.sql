-- The tokens in a bucket at `at` (NULL when there is no rate limit).
CREATE OR REPLACE FUNCTION {schema}.bucket_tokens(
    tokens double precision, refilled_at timestamptz, rate_limit integer,
    rate_period double precision, rate_burst integer, at timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN $3 IS NULL THEN NULL ELSE
        least($5::float8, coalesce($1, $5::float8)
              + greatest(extract(epoch FROM $6 - coalesce($2, $6)), 0) * $3 / $4)
    END
$$;
