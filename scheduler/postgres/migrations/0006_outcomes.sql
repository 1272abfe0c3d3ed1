-- Job outcomes (issue 12): the return value of a job, and waking whoever waits for a job
-- to finish.
--
-- `result` holds what a successful attempt returned, as JSON (read only while the job is
-- succeeded: a later REPLACE or retry makes it stale, and get_job hides it then).
-- `awaited` is set by wait_for_job(): only jobs somebody waits for send a NOTIFY when
-- they finish, so ordinary completions add no notification (NOTIFY serialises commits).

ALTER TABLE {schema}.jobs
    ADD COLUMN result  jsonb,
    ADD COLUMN awaited boolean NOT NULL DEFAULT false;

-- 'finished <job id>' for every awaited job a statement moved to a terminal status.
CREATE FUNCTION {schema}.notify_finished_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    finished_id text;
BEGIN
    FOR finished_id IN
        SELECT n.job_id FROM new_rows n JOIN old_rows o USING (job_id)
        WHERE n.awaited AND n.status IN ('succeeded', 'failed', 'cancelled')
          AND o.status IS DISTINCT FROM n.status
    LOOP
        PERFORM pg_notify(TG_ARGV[0], 'finished ' || finished_id);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_finished AFTER UPDATE ON {schema}.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_finished_jobs({channel});
