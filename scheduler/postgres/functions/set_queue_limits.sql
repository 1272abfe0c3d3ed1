-- Set (replace) the limits of a queue; NULL removes a limit. concurrency_limit: at most
-- that many of its jobs run at once, fleet-wide. rate_limit: at most that many starts per
-- rate_period seconds on average, rate_burst of them at once. Changing the rate refills
-- the bucket.
CREATE OR REPLACE FUNCTION {schema}.set_queue_limits(
    queue text, concurrency_limit integer DEFAULT NULL, rate_limit integer DEFAULT NULL,
    rate_period double precision DEFAULT 1, rate_burst integer DEFAULT 1
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM {schema}.check_limits(concurrency_limit, rate_limit, rate_period, rate_burst);
    IF queue IS NULL OR length(queue) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'queue must be a text of 1 to 255 characters';
    END IF;
    INSERT INTO {schema}.queues AS q
        (queue, concurrency_limit, rate_limit, rate_period, rate_burst)
    VALUES (set_queue_limits.queue, set_queue_limits.concurrency_limit,
            set_queue_limits.rate_limit, set_queue_limits.rate_period,
            set_queue_limits.rate_burst)
    ON CONFLICT ON CONSTRAINT queues_pkey DO UPDATE SET
        concurrency_limit = excluded.concurrency_limit, rate_limit = excluded.rate_limit,
        rate_period = excluded.rate_period, rate_burst = excluded.rate_burst,
        tokens = CASE WHEN (q.rate_limit, q.rate_period, q.rate_burst)
                           IS NOT DISTINCT FROM
                           (excluded.rate_limit, excluded.rate_period, excluded.rate_burst)
                      THEN q.tokens END,
        refilled_at = CASE WHEN (q.rate_limit, q.rate_period, q.rate_burst)
                                IS NOT DISTINCT FROM
                                (excluded.rate_limit, excluded.rate_period, excluded.rate_burst)
                           THEN q.refilled_at END,
        updated_at = now();
END
$$;
