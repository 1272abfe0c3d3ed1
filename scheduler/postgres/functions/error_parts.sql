-- An error's type and message apart from its full text (issue 19.8). `last_error` (jobs) and
-- `error` (job_attempts) keep the full text; `error_type` (NULL when the error is no
-- exception, e.g. "timed out after 5 seconds") and `error_message` are what lists, the
-- dashboard and alerts show. Python writes both parts with the text; every other writer
-- (the SQL worker protocol, which takes an error text from any language; the scheduler's own
-- reasons: a lost lease, a cancelled dependency...) writes only the text, and the triggers of
-- jobs_error_parts.sql and job_attempts_error_parts.sql derive the parts with this rule: in a
-- Python traceback, the exception is what follows its last indented line ("Type: message");
-- any other text is its own message, by its first line.
CREATE OR REPLACE FUNCTION {schema}.error_parts(error text, OUT error_type text, OUT error_message text)
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

-- Rows that got their error before migration error_parts added the columns get their parts
-- here, once: only in the transaction that applied that migration (migrate applies these
-- files right after the migrations, in the same transaction, and records each migration
-- with applied_at = now()). The EXISTS is evaluated once, before any row is read, so a later
-- re-application of the files (any release that changes a file) scans neither table. It
-- runs before the triggers of the next files exist, so they do not fire on it.
UPDATE {schema}.jobs
SET (error_type, error_message) = (SELECT * FROM {schema}.error_parts(last_error))
WHERE last_error IS NOT NULL
  AND EXISTS (SELECT FROM {schema}.schema_migrations
              WHERE name = 'error_parts' AND applied_at = now());
UPDATE {schema}.job_attempts
SET (error_type, error_message) = (SELECT * FROM {schema}.error_parts(error))
WHERE error IS NOT NULL
  AND EXISTS (SELECT FROM {schema}.schema_migrations
              WHERE name = 'error_parts' AND applied_at = now());
