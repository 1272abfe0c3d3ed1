-- Set (replace) the concurrency and rate limits of a queue; NULL removes a limit.
-- concurrency_limit: at most that many of its jobs run at once, fleet-wide. rate_limit: at
-- most that many starts per rate_period seconds on average, rate_burst of them at once.
-- Changing the rate refills the bucket. Rows of the two kinds (set_limit()); limits of
-- other kinds are left as they are. rate_period and rate_burst are checked even without
-- a rate_limit, so a typo is not stored silently.
CREATE OR REPLACE FUNCTION {schema}.set_queue_limits(
    queue text, concurrency_limit integer DEFAULT NULL, rate_limit integer DEFAULT NULL,
    rate_period double precision DEFAULT 1, rate_burst integer DEFAULT 1
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT {schema}.set_scope_limits('queue', $1, $2, $3, $4, $5)
$$;
