-- A blocked job stays blocked while a dependency has not succeeded, whoever rewrites it
-- (a REPLACE, a hand-written UPDATE): only the count reaching 0 releases it.
CREATE OR REPLACE FUNCTION {schema}.keep_blocked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.status := 'blocked';
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS jobs_keep_blocked ON {schema}.jobs;
CREATE TRIGGER jobs_keep_blocked BEFORE UPDATE ON {schema}.jobs
    FOR EACH ROW
    WHEN (OLD.status = 'blocked' AND NEW.status = 'pending' AND NEW.blocked_by > 0)
    EXECUTE FUNCTION {schema}.keep_blocked();
