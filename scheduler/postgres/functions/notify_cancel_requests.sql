-- Cancellation requests of running jobs reach the replica running them at once, whether
-- they come from cancel_job() or from plain SQL.
CREATE OR REPLACE FUNCTION {schema}.notify_cancel_requests() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    requested_id text;
BEGIN
    FOR requested_id IN
        SELECT n.job_id FROM new_rows n JOIN old_rows o USING (job_id)
        WHERE n.status = 'running' AND n.cancel_requested_at IS NOT NULL
          AND o.cancel_requested_at IS NULL
    LOOP
        PERFORM pg_notify(TG_ARGV[0], 'cancel ' || requested_id);
    END LOOP;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_notify_cancel ON {schema}.jobs;
CREATE TRIGGER jobs_notify_cancel AFTER UPDATE ON {schema}.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_cancel_requests({channel});
