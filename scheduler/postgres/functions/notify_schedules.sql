-- Tickers sleep until the earliest next fire time; a changed schedule wakes them with the
-- new delay (one notification per statement).
-- A schedule waiting for its first fire time wakes the tickers at once.
CREATE OR REPLACE FUNCTION {schema}.notify_schedules() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next_fire timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE needs_first_fire AND NOT paused) THEN
        PERFORM pg_notify(TG_ARGV[0], 'schedule 0');
        RETURN NULL;
    END IF;
    SELECT min(next_fire_time) INTO next_fire FROM new_rows WHERE NOT paused;
    IF next_fire IS NOT NULL THEN
        PERFORM pg_notify(TG_ARGV[0],
            'schedule ' || extract(epoch FROM next_fire - clock_timestamp())::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS schedules_notify_insert ON {schema}.schedules;
CREATE TRIGGER schedules_notify_insert AFTER INSERT ON {schema}.schedules
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_schedules({channel});

DROP TRIGGER IF EXISTS schedules_notify_update ON {schema}.schedules;
CREATE TRIGGER schedules_notify_update AFTER UPDATE ON {schema}.schedules
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_schedules({channel});
