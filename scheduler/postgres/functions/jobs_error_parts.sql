-- jobs: when last_error changes and the writer did not set the parts with it, derive them
-- (error_parts.sql); no text, no parts. The WHEN clauses keep the trigger off the hot path:
-- a claim does not touch the error columns, and a success writes last_error NULL over NULL
-- (it fires only on a success after a failed attempt, to clear the parts).
-- SECURITY DEFINER: error_parts() is callable only by the owner (public_access.sql), and
-- the trigger fires for whoever writes the row (a runtime role's sweep, a producer).
CREATE OR REPLACE FUNCTION {schema}.jobs_error_parts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.last_error IS NULL THEN
        NEW.error_type := NULL;
        NEW.error_message := NULL;
    ELSIF TG_OP = 'INSERT' OR NEW.error_message IS NULL
          OR (NEW.error_type IS NOT DISTINCT FROM OLD.error_type
              AND NEW.error_message IS NOT DISTINCT FROM OLD.error_message) THEN
        SELECT p.error_type, p.error_message INTO NEW.error_type, NEW.error_message
        FROM {schema}.error_parts(NEW.last_error) p;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS jobs_error_parts_on_insert ON {schema}.jobs;
CREATE TRIGGER jobs_error_parts_on_insert BEFORE INSERT ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.last_error IS NOT NULL OR NEW.error_message IS NOT NULL)
    EXECUTE FUNCTION {schema}.jobs_error_parts();

DROP TRIGGER IF EXISTS jobs_error_parts_on_update ON {schema}.jobs;
CREATE TRIGGER jobs_error_parts_on_update BEFORE UPDATE ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.last_error IS DISTINCT FROM OLD.last_error
                       OR NEW.error_message IS DISTINCT FROM OLD.error_message
                       OR NEW.error_type IS DISTINCT FROM OLD.error_type)
    EXECUTE FUNCTION {schema}.jobs_error_parts();
