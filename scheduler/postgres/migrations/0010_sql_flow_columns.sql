-- The SQL producer API (0005) takes the flow-control columns of 0007: schedule_job(),
-- job_request() and schedule_jobs() accept a queue, a lock key and a unique key, checked
-- as Python checks them, and a unique key meets `conflict` exactly as in Python:
--   'raise'   23505 (constraint jobs_unique_key_idx) naming the unfinished job holding it;
--   'ignore'  nothing written, the holder's id returned;
--   'replace' the holder overwritten in place while pending (or blocked: it stays
--             blocked), keeping its id, which is returned; 55006 if it is running.
-- Old calls keep working: the new parameters come last, with defaults (queue 'default').

ALTER TYPE {schema}.job_request
    ADD ATTRIBUTE queue text,
    ADD ATTRIBUTE lock_key text,
    ADD ATTRIBUTE unique_key text;

-- A changed signature is a new function: drop the old one so one name keeps one function
-- (the grant helpers name functions without arguments). Rights are given back below.
DROP FUNCTION {schema}.job_request(
    text, jsonb, jsonb, timestamptz, interval, text, integer, integer, interval);
CREATE FUNCTION {schema}.job_request(
    task_name   text,
    args        jsonb DEFAULT '[]',
    kwargs      jsonb DEFAULT '{}',
    run_at      timestamptz DEFAULT NULL,
    delay       interval DEFAULT NULL,
    job_id      text DEFAULT NULL,
    priority    integer DEFAULT 5,
    max_retries integer DEFAULT 0,
    timeout     interval DEFAULT NULL,
    queue       text DEFAULT 'default',
    lock_key    text DEFAULT NULL,
    unique_key  text DEFAULT NULL
) RETURNS {schema}.job_request
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)::{schema}.job_request
$$;

-- check_job_request() keeps its name and contract (every check of schedule(), defaults
-- filled in). 0005's function, renamed check_job_basics and otherwise unchanged, checks the
-- fields it knew; the new check_job_request() calls it, then checks the flow-control
-- fields. SECURITY DEFINER so a caller needs EXECUTE on this one only; it reads no table.
ALTER FUNCTION {schema}.check_job_request({schema}.job_request, text)
    RENAME TO check_job_basics;

CREATE FUNCTION {schema}.check_job_request(request {schema}.job_request, label text DEFAULT NULL)
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

-- Enqueue a batch, all or nothing; returns, in input order, each job's id or, for a job
-- whose unique key an unfinished job holds, that job's id ('ignore', 'replace'). On an
-- existing id, `conflict` does what 0005 describes; on a held unique key, what the header
-- of this file says. Ids and unique keys must each be distinct within the batch.
CREATE OR REPLACE FUNCTION {schema}.schedule_jobs(
    jobs {schema}.job_request[], conflict text DEFAULT 'raise'
) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    policy text := lower(conflict);
    checked {schema}.job_request[] := '{}';
    request {schema}.job_request;
    n integer := 0;
    kept text;
    duplicate text;
    written text[];
    ids text[];
    refused text;
    holder text;
    violated text;
BEGIN
    IF policy IS NULL OR policy NOT IN ('raise', 'ignore', 'replace') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
            'conflict must be ''raise'', ''ignore'' or ''replace'', got %s',
            coalesce(quote_literal(conflict), 'NULL'));
    END IF;
    IF jobs IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'jobs must be an array of job_request (empty for none), got NULL';
    END IF;
    FOREACH request IN ARRAY jobs LOOP
        n := n + 1;
        -- A one-job batch is schedule_job(): its messages need no position.
        checked := checked || {schema}.check_job_request(
            request, CASE WHEN cardinality(jobs) > 1 THEN format('jobs[%s]', n) END);
    END LOOP;
    IF cardinality(checked) = 0 THEN
        RETURN '{}';
    END IF;
    SELECT d.key INTO duplicate FROM (
        SELECT 'job_id ' || quote_literal(c.job_id) AS key FROM unnest(checked) AS c
        UNION ALL
        SELECT 'unique_key ' || quote_literal(c.unique_key) FROM unnest(checked) AS c
        WHERE c.unique_key IS NOT NULL
    ) d GROUP BY d.key HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('%s appears twice in one batch', duplicate);
    END IF;
    ids := ARRAY(SELECT c.job_id FROM unnest(checked) AS c);

    IF policy = 'replace' THEN
        -- Jobs without a unique key replace by id, as in 0005.
        WITH w AS (
            INSERT INTO {schema}.jobs AS j
                (job_id, task_name, args, kwargs, priority, execution_time, max_retries,
                 timeout_seconds, queue, lock_key, unique_key)
            SELECT c.job_id, c.task_name, c.args, c.kwargs, c.priority, c.run_at,
                   c.max_retries, extract(epoch FROM c.timeout)::float8, c.queue, c.lock_key,
                   NULL
            FROM unnest(checked) AS c WHERE c.unique_key IS NULL
            ON CONFLICT (job_id) DO UPDATE SET
                task_name = excluded.task_name, args = excluded.args, kwargs = excluded.kwargs,
                priority = excluded.priority, execution_time = excluded.execution_time,
                max_retries = excluded.max_retries, timeout_seconds = excluded.timeout_seconds,
                queue = excluded.queue, lock_key = excluded.lock_key, unique_key = NULL,
                status = 'pending', failures = 0, lost_leases = 0, last_error = NULL,
                cancel_requested_at = NULL,
                started_at = NULL, finished_at = NULL, updated_at = now()
            WHERE j.status <> 'running'
            RETURNING j.job_id
        )
        SELECT array_agg(w.job_id) INTO written FROM w;
        SELECT c.job_id INTO refused FROM unnest(checked) WITH ORDINALITY AS c
        WHERE c.unique_key IS NULL AND NOT (c.job_id = ANY (coalesce(written, '{}')))
        ORDER BY c.ordinality LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = '55006', MESSAGE = format(
                'job %L is running, so nothing was replaced; cancel it first (cancel_job)'
                ' or schedule under another id', refused);
        END IF;
        -- Jobs with one replace the unfinished job holding the key, or are inserted.
        n := 0;
        FOREACH request IN ARRAY checked LOOP
            n := n + 1;
            CONTINUE WHEN request.unique_key IS NULL;
            BEGIN
                INSERT INTO {schema}.jobs AS j
                    (job_id, task_name, args, kwargs, priority, execution_time, max_retries,
                     timeout_seconds, queue, lock_key, unique_key)
                VALUES (request.job_id, request.task_name, request.args, request.kwargs,
                        request.priority, request.run_at, request.max_retries,
                        extract(epoch FROM request.timeout)::float8, request.queue,
                        request.lock_key, request.unique_key)
                ON CONFLICT (unique_key) WHERE status IN ('pending', 'blocked', 'running')
                                          AND unique_key IS NOT NULL
                DO UPDATE SET
                    task_name = excluded.task_name, args = excluded.args,
                    kwargs = excluded.kwargs, priority = excluded.priority,
                    execution_time = excluded.execution_time,
                    max_retries = excluded.max_retries,
                    timeout_seconds = excluded.timeout_seconds, queue = excluded.queue,
                    lock_key = excluded.lock_key, failures = 0, lost_leases = 0,
                    last_error = NULL, cancel_requested_at = NULL, updated_at = now()
                WHERE j.status IN ('pending', 'blocked')
                RETURNING j.job_id INTO kept;
            EXCEPTION WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS violated = CONSTRAINT_NAME;
                IF violated IS DISTINCT FROM 'jobs_pkey' THEN
                    RAISE;
                END IF;
                RAISE EXCEPTION USING ERRCODE = '23505', CONSTRAINT = 'jobs_pkey',
                    MESSAGE = format(
                        'a job with id %L already exists and does not hold unique_key %L;'
                        ' replace with a unique key replaces the job holding the key, so'
                        ' schedule it under another job_id (or none)',
                        request.job_id, request.unique_key);
            END;
            IF NOT FOUND THEN
                SELECT h.job_id INTO holder FROM {schema}.jobs h
                WHERE h.unique_key = request.unique_key AND h.status = 'running';
                RAISE EXCEPTION USING ERRCODE = '55006', MESSAGE = format(
                    'job %L holds unique_key %L and is running, so nothing was replaced;'
                    ' cancel it first (cancel_job) or let it finish', holder,
                    request.unique_key);
            END IF;
            ids[n] := kept;
        END LOOP;
        RETURN ids;
    END IF;

    -- 'raise' and 'ignore': insert what conflicts with nothing (neither an id nor a held
    -- unique key), then decide on the rest.
    WITH w AS (
        INSERT INTO {schema}.jobs AS j
            (job_id, task_name, args, kwargs, priority, execution_time, max_retries,
             timeout_seconds, queue, lock_key, unique_key)
        SELECT c.job_id, c.task_name, c.args, c.kwargs, c.priority, c.run_at,
               c.max_retries, extract(epoch FROM c.timeout)::float8, c.queue, c.lock_key,
               c.unique_key
        FROM unnest(checked) AS c
        ON CONFLICT DO NOTHING
        RETURNING j.job_id
    )
    SELECT array_agg(w.job_id) INTO written FROM w;
    IF coalesce(cardinality(written), 0) = cardinality(checked) THEN
        RETURN ids;
    END IF;
    IF policy = 'ignore' THEN
        -- The holder's id for a held key; else (the id exists) the id asked for.
        RETURN ARRAY(
            SELECT coalesce(h.job_id, c.job_id)
            FROM unnest(checked) WITH ORDINALITY AS c
            LEFT JOIN {schema}.jobs h
                ON h.unique_key = c.unique_key AND h.status IN ('pending', 'blocked', 'running')
               AND NOT (c.job_id = ANY (coalesce(written, '{}')))
            ORDER BY c.ordinality);
    END IF;
    SELECT c.job_id, c.unique_key, h.job_id INTO refused, duplicate, holder
    FROM unnest(checked) WITH ORDINALITY AS c
    LEFT JOIN {schema}.jobs h
        ON h.unique_key = c.unique_key AND h.status IN ('pending', 'blocked', 'running')
    WHERE NOT (c.job_id = ANY (coalesce(written, '{}')))
    ORDER BY c.ordinality LIMIT 1;
    IF holder IS DISTINCT FROM refused AND holder IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '23505', CONSTRAINT = 'jobs_unique_key_idx',
            MESSAGE = format(
                'job %L already holds unique_key %L (it is pending, blocked or running);'
                ' pass conflict => ''ignore'' to keep it (its id is returned) or'
                ' ''replace'' to overwrite it while it is pending', holder, duplicate);
    END IF;
    RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = format(
        'a job with id %L already exists; pass conflict => ''ignore'' to keep it or'
        ' ''replace'' to overwrite it', refused);
END
$$;

DROP FUNCTION {schema}.schedule_job(
    text, jsonb, jsonb, timestamptz, interval, text, integer, integer, interval, text);
-- Enqueue one job; returns its id, or the id of the job holding its unique key (see
-- schedule_jobs()). The parameters of 0005 keep their positions; the new ones follow.
CREATE FUNCTION {schema}.schedule_job(
    task_name   text,
    args        jsonb DEFAULT '[]',
    kwargs      jsonb DEFAULT '{}',
    run_at      timestamptz DEFAULT NULL,
    delay       interval DEFAULT NULL,
    job_id      text DEFAULT NULL,
    priority    integer DEFAULT 5,
    max_retries integer DEFAULT 0,
    timeout     interval DEFAULT NULL,
    conflict    text DEFAULT 'raise',
    queue       text DEFAULT 'default',
    lock_key    text DEFAULT NULL,
    unique_key  text DEFAULT NULL
) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT ({schema}.schedule_jobs(
        ARRAY[ROW($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12, $13)::{schema}.job_request],
        $10))[1]
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC;

-- Roles granted before this migration keep calling schedule_job() & co. without running
-- the grant helpers again: whoever may call schedule_jobs() (whose grants survive, as it
-- was replaced in place) gets the functions recreated above. grant_runtime_role() and
-- grant_producer_role() name them as before, so later grants need no change.
DO $$
DECLARE
    grantee name;
BEGIN
    FOR grantee IN
        SELECT r.rolname
        FROM pg_proc p
        CROSS JOIN LATERAL aclexplode(p.proacl) AS a
        JOIN pg_roles r ON r.oid = a.grantee
        WHERE p.oid = '{schema}.schedule_jobs({schema}.job_request[], text)'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION {schema}.job_request,'
                       ' {schema}.check_job_request, {schema}.schedule_job TO %I', grantee);
    END LOOP;
END
$$;
