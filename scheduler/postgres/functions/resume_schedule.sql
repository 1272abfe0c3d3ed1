-- Fire again from the next slot after now (a replica computes it): slots that passed while
-- paused do not run. False: no such schedule.
CREATE OR REPLACE FUNCTION {schema}.resume_schedule(schedule_id text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH resumed AS (
        UPDATE {schema}.schedules s SET
            paused = false, needs_first_fire = true, trigger_error = NULL,
            updated_at = now()
        WHERE s.schedule_id = resume_schedule.schedule_id RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM resumed)
$$;
