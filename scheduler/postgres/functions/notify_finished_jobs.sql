-- 'finished <job id>' for every awaited job a statement moved to a terminal status.
CREATE OR REPLACE FUNCTION {schema}.notify_finished_jobs() RETURNS trigger
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

DROP TRIGGER IF EXISTS jobs_notify_finished ON {schema}.jobs;
CREATE TRIGGER jobs_notify_finished AFTER UPDATE ON {schema}.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_finished_jobs({channel});
