-- job_attempts rows are only inserted: derive the parts the writer did not give
-- (error_parts.sql). SECURITY DEFINER for the reason given in jobs_error_parts.sql.
CREATE OR REPLACE FUNCTION {schema}.job_attempts_error_parts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT p.error_type, p.error_message INTO NEW.error_type, NEW.error_message
    FROM {schema}.error_parts(NEW.error) p;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS job_attempts_error_parts ON {schema}.job_attempts;
CREATE TRIGGER job_attempts_error_parts BEFORE INSERT ON {schema}.job_attempts
    FOR EACH ROW WHEN (NEW.error IS NOT NULL AND NEW.error_message IS NULL)
    EXECUTE FUNCTION {schema}.job_attempts_error_parts();
