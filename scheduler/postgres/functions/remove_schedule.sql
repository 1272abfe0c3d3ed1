-- Delete a schedule; jobs it already fired stay. False: no such schedule.
CREATE OR REPLACE FUNCTION {schema}.remove_schedule(schedule_id text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH removed AS (
        DELETE FROM {schema}.schedules s
        WHERE s.schedule_id = remove_schedule.schedule_id RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM removed)
$$;
