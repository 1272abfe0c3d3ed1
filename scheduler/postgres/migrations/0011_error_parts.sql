-- Issue 19.8: an error's type and message apart from its traceback. `last_error` (jobs)
-- and `error` (job_attempts) keep the full text; `error_type` (NULL when the error is no
-- exception, e.g. "timed out after 5 seconds") and `error_message` are what lists, the
-- dashboard and alerts show.
--
-- Python writes both parts with the text. Every other writer (the SQL worker protocol,
-- which takes an error text from any language; the scheduler's own reasons: a lost lease,
-- a cancelled dependency...) only writes the text: a trigger derives the parts from it.
-- The rule (error_parts): in a Python traceback, the exception is what follows its last
-- indented line ("Type: message"); any other text is its own message, by its first line.
-- Existing rows are derived the same way below.

ALTER TABLE {schema}.jobs ADD COLUMN error_type text, ADD COLUMN error_message text;
ALTER TABLE {schema}.job_attempts ADD COLUMN error_type text, ADD COLUMN error_message text;

CREATE FUNCTION {schema}.error_parts(error text, OUT error_type text, OUT error_message text)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lines text[];
    last_indented integer := 0;
    exception_text text;
    parts text[];
BEGIN
    IF error IS NULL OR btrim(error, E' \t\r\n') = '' THEN
        RETURN;
    END IF;
    lines := regexp_split_to_array(btrim(error, E' \t\r\n'), E'\r?\n');
    IF error ~ '(^|\n)Traceback \(most recent call last\):' THEN
        FOR i IN 1 .. array_length(lines, 1) LOOP
            IF lines[i] ~ '^\s' THEN
                last_indented := i;
            END IF;
        END LOOP;
        exception_text := array_to_string(lines[last_indented + 1 :], E'\n');
        parts := regexp_match(exception_text, '^([A-Za-z_][A-Za-z0-9_.]*)(: ?(.*))?$');
        IF parts IS NOT NULL THEN
            error_type := parts[1];
            error_message := left(coalesce(parts[3], ''), 2000);
            RETURN;
        END IF;
        IF exception_text <> '' THEN
            error_message := left(exception_text, 2000);
            RETURN;
        END IF;
    END IF;
    error_message := left(lines[1], 2000);
END
$$;
-- Pure and needed by the triggers below whoever writes the row.
GRANT EXECUTE ON FUNCTION {schema}.error_parts(text) TO PUBLIC;

UPDATE {schema}.jobs
SET (error_type, error_message) = (SELECT * FROM {schema}.error_parts(last_error))
WHERE last_error IS NOT NULL;
UPDATE {schema}.job_attempts
SET (error_type, error_message) = (SELECT * FROM {schema}.error_parts(error))
WHERE error IS NOT NULL;

-- jobs: when last_error changes and the writer did not set the parts with it, derive them;
-- no text, no parts. The WHEN clauses keep the trigger off the success path (NULL to NULL).
CREATE FUNCTION {schema}.jobs_error_parts() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
CREATE TRIGGER jobs_error_parts_on_insert BEFORE INSERT ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.last_error IS NOT NULL OR NEW.error_message IS NOT NULL)
    EXECUTE FUNCTION {schema}.jobs_error_parts();
CREATE TRIGGER jobs_error_parts_on_update BEFORE UPDATE ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.last_error IS DISTINCT FROM OLD.last_error
                       OR NEW.error_message IS DISTINCT FROM OLD.error_message
                       OR NEW.error_type IS DISTINCT FROM OLD.error_type)
    EXECUTE FUNCTION {schema}.jobs_error_parts();

-- job_attempts rows are only inserted: derive the parts the writer did not give.
CREATE FUNCTION {schema}.job_attempts_error_parts() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT p.error_type, p.error_message INTO NEW.error_type, NEW.error_message
    FROM {schema}.error_parts(NEW.error) p;
    RETURN NEW;
END
$$;
CREATE TRIGGER job_attempts_error_parts BEFORE INSERT ON {schema}.job_attempts
    FOR EACH ROW WHEN (NEW.error IS NOT NULL AND NEW.error_message IS NULL)
    EXECUTE FUNCTION {schema}.job_attempts_error_parts();
-- The views show the parts too (new columns last: the old ones keep their places).
CREATE OR REPLACE VIEW {schema}.recent_failures AS
SELECT j.job_id, j.task_name, j.finished_at, j.last_error, j.attempts, j.failures,
       j.lost_leases, j.max_retries, j.schedule_id, j.error_type, j.error_message
FROM {schema}.jobs j
WHERE j.status = 'failed' AND j.finished_at > now() - interval '24 hours'
ORDER BY j.finished_at DESC;

CREATE OR REPLACE VIEW {schema}.attempt_history AS
SELECT a.job_id, j.task_name, a.attempt, a.outcome, a.error, a.worker_id, a.hostname,
       a.claimed_at, a.started_at, a.finished_at, a.finished_at - a.started_at AS duration,
       a.error_type, a.error_message
FROM {schema}.job_attempts a JOIN {schema}.jobs j USING (job_id);
