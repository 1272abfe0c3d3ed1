-- check_job_request() (0005) under the name 0010 gave it: check_job_request() calls it,
-- then checks the flow-control fields.
-- The checks of Scheduler.schedule(), as SQL can make them; returns the request with its
-- defaults filled in (a generated id, the due time). `label` prefixes messages in batches.
-- The payload cap is settings.max_payload_bytes (default 65536, the Python default; only
-- the owner may change it: a session SET of scheduler.max_payload_bytes changes nothing),
-- measured on jsonb's text form. run_at, delay and timeout have Python's bounds, so
-- now() + delay and every stored time stay inside both PostgreSQL's and Python's ranges.
CREATE OR REPLACE FUNCTION {schema}.check_job_basics(request {schema}.job_request, label text DEFAULT NULL)
RETURNS {schema}.job_request
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prefix text := CASE WHEN label IS NULL THEN '' ELSE label || ': ' END;
    max_bytes integer := coalesce(
        (SELECT s.max_payload_bytes FROM {schema}.settings s), 65536);
    size integer;
BEGIN
    IF request IS NULL OR request.task_name IS NULL OR request.task_name = ''
       OR length(request.task_name) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix
            || 'task_name must be a non-empty text of at most 255 characters, got '
            || coalesce(quote_literal(left(request.task_name, 300)), 'NULL');
    END IF;
    IF request.task_name !~ '^[A-Za-z_][[:alnum:]_.:<>-]*$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'task name %L may contain only letters, digits and _ . : < > - and must start'
            ' with a letter or _ (a registered task is named module:function)',
            request.task_name);
    END IF;
    request.args := coalesce(request.args, '[]');
    request.kwargs := coalesce(request.kwargs, '{}');
    IF jsonb_typeof(request.args) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'args must be a JSON array of positional arguments, got %s (for one argument'
            ' write ''[value]'' or jsonb_build_array(value))', jsonb_typeof(request.args));
    END IF;
    IF jsonb_typeof(request.kwargs) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'kwargs must be a JSON object of keyword arguments, got %s',
            jsonb_typeof(request.kwargs));
    END IF;
    size := octet_length(request.args::text) + octet_length(request.kwargs::text);
    IF size > max_bytes THEN
        RAISE EXCEPTION USING ERRCODE = '54000', MESSAGE = prefix || format(
            'job arguments encode to %s bytes, over the cap of %s; store large data'
            ' elsewhere (a table, object storage) and pass its key (the schema owner sets'
            ' the cap: UPDATE settings SET max_payload_bytes = ...)', size, max_bytes);
    END IF;
    IF request.run_at IS NOT NULL AND request.delay IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = prefix || 'pass either run_at or delay, not both';
    END IF;
    -- Python's bounds (scheduler/limits.py): its datetime reads every stored time back.
    IF request.run_at IS NOT NULL AND NOT (request.run_at >= '0001-01-02 00:00:00+00'
                                           AND request.run_at <= '9999-12-30 00:00:00+00') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'run_at must lie between 0001-01-02 and 9999-12-30 UTC, got %s; to park a job,'
            ' schedule it far ahead or cancel it', request.run_at);
    END IF;
    IF request.delay < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'delay must be >= 0, got %s; for a time in the past use run_at (due at once)',
            request.delay);
    END IF;
    IF extract(epoch FROM request.delay) > 31557600000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'delay must be at most 1000 years, got %s', request.delay);
    END IF;
    request.run_at := coalesce(request.run_at, now() + coalesce(request.delay, interval '0'));
    request.delay := NULL;
    IF request.job_id IS NULL THEN
        -- Time-ordered (UUID version 7), as the Python client's ids (scheduler/ids.py): the
        -- first 48 bits are the Unix time in ms, so jobs enqueued together share primary-key
        -- pages, and each one's claim and outcome do not dirty (and log whole, after a
        -- checkpoint) a page of its own. The version bits of a random UUID turned to 7.
        request.job_id := encode(set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp())
                                                     * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1), 'hex')::uuid::text;
    ELSIF request.job_id = '' OR length(request.job_id) > 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'job_id must be a text of 1 to 255 characters, got %L', left(request.job_id, 300));
    END IF;
    IF request.priority IS NULL OR request.priority NOT IN (1, 5, 10, 20) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'unknown priority %s; use one of LOW (1), NORMAL (5), HIGH (10), CRITICAL (20)',
            coalesce(request.priority::text, 'NULL'));
    END IF;
    IF request.max_retries IS NULL OR request.max_retries < 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'max_retries must be an integer >= 0, got %s',
            coalesce(request.max_retries::text, 'NULL'));
    END IF;
    IF request.timeout <= interval '0' OR extract(epoch FROM request.timeout) > 31557600000
    THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'timeout must be > 0 and at most 1000 years (or NULL for none), got %s',
            request.timeout);
    END IF;
    RETURN request;
END
$$;
