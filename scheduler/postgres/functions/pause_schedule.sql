-- Stop a schedule firing on every replica. False: no such schedule.
CREATE OR REPLACE FUNCTION {schema}.pause_schedule(schedule_id text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH paused AS (
        UPDATE {schema}.schedules s SET paused = true, updated_at = now()
        WHERE s.schedule_id = pause_schedule.schedule_id RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM paused)
$$;
