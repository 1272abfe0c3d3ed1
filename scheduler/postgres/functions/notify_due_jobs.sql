-- One notification per statement, not per row: the delay until the earliest pending row the
-- statement wrote. Listeners arm a timer with it. Measured with clock_timestamp() so a long
-- transaction does not make the delay look shorter than it is.
CREATE OR REPLACE FUNCTION {schema}.notify_due_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next_due timestamptz;
BEGIN
    SELECT min(execution_time) INTO next_due FROM new_rows WHERE status = 'pending';
    IF next_due IS NOT NULL THEN
        PERFORM pg_notify(TG_ARGV[0],
            'due ' || extract(epoch FROM next_due - clock_timestamp())::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_notify_insert ON {schema}.jobs;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON {schema}.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_due_jobs({channel});

DROP TRIGGER IF EXISTS jobs_notify_update ON {schema}.jobs;
CREATE TRIGGER jobs_notify_update AFTER UPDATE ON {schema}.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_due_jobs({channel});
