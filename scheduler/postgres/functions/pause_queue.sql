-- ---------------------------------------------------------------------------------------
-- Operating queues and limits from SQL (the Python API and the CLI call the same).

-- Pause a queue fleet-wide: no worker claims from it until resume_queue(); running jobs
-- finish. Returns true.
CREATE OR REPLACE FUNCTION {schema}.pause_queue(queue text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO {schema}.queues AS q (queue, paused) VALUES ($1, true)
    ON CONFLICT (queue) DO UPDATE SET paused = true, updated_at = now()
    RETURNING true
$$;
