-- Resume a paused queue. Returns whether it was paused.
CREATE OR REPLACE FUNCTION {schema}.resume_queue(queue text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH was AS (SELECT q.paused FROM {schema}.queues q WHERE q.queue = $1 FOR UPDATE),
    changed AS (
        UPDATE {schema}.queues q SET paused = false, updated_at = now()
        WHERE q.queue = $1 RETURNING 1
    )
    SELECT coalesce((SELECT paused FROM was), false)
$$;
