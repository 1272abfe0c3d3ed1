-- check_job_request() keeps its name and contract (every check of schedule(), defaults
-- filled in): it calls check_job_basics(), which checks the fields 0005 knew, then checks
-- the flow-control fields. SECURITY DEFINER so a caller needs EXECUTE on this one only; it
-- reads no table.
CREATE OR REPLACE FUNCTION {schema}.check_job_request(request {schema}.job_request, label text DEFAULT NULL)
RETURNS {schema}.job_request
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prefix text := CASE WHEN label IS NULL THEN '' ELSE label || ': ' END;
BEGIN
    request := {schema}.check_job_basics(request, label);
    -- NULL is "the default queue", as Python's queue=None is the task's queue: the
    -- database does not know the tasks' declared queues.
    request.queue := coalesce(request.queue, 'default');
    IF request.queue !~ '^[A-Za-z0-9_.:-]{1,255}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'queue must be a text of 1 to 255 letters, digits and _ . : -, got %L',
            left(request.queue, 300));
    END IF;
    -- Text cannot hold NUL, so length is all Python checks beyond what SQL guarantees.
    IF length(request.lock_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'lock_key must be NULL or a text of 1 to 255 characters, got %L',
            left(request.lock_key, 300));
    END IF;
    IF length(request.unique_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = prefix || format(
            'unique_key must be NULL or a text of 1 to 255 characters, got %L',
            left(request.unique_key, 300));
    END IF;
    RETURN request;
END
$$;
